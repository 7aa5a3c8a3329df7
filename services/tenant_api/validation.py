"""Checks and normalises API input before anything is started."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import email_validator
import idna

from libs import namespace
from libs.lifecycle import (
    DEFAULT_GRACE_PERIOD,
    MAX_GRACE_PERIOD,
    TENANT_ID_RULE,
    reserved_tenant_id,
    valid_tenant_id,
)
from services.tenant_api import filters
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2

MAX_DISPLAY_NAME = 200
MAX_PERSON_NAME = 100
MAX_DOMAINS = 10
MAX_EMAIL = 254
MAX_EMAIL_LOCAL = 64  # RFC 5321
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_DOMAIN = 253
NANOS_PER_SECOND = 1_000_000_000

Violations = list[tuple[str, str]]

# -- names shown to people ----------------------------------------------------

# Invisible or reordering characters: a name that shows as one thing and is another.
# Cc control, Cf format (zero-width, bidi embeddings, overrides and isolates,
# soft hyphen, BOM), Cs surrogates, Co private use, Cn unassigned, and the
# line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# The explicit bidi controls (all Cf today; named so that no Unicode update lets one through).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def hidden_character(value: str) -> bool:
    """Whether `value` holds a control, format (zero-width, bidi) or unassigned character."""
    return any(ch in BIDI_CONTROLS or unicodedata.category(ch) in _HIDDEN_CATEGORIES for ch in value)


def display_text(value: str, field: str, violations: Violations, *, limit: int, required: bool) -> str:
    """A name shown to people: trimmed, NFC, at most `limit` characters, nothing hidden."""
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        if required:
            violations.append((field, "required"))
    elif len(text) > limit or hidden_character(text):
        violations.append(
            (field, f"at most {limit} characters, no control, zero-width or bidi-override characters")
        )
    return text


# -- domains ------------------------------------------------------------------

# Letters of Cyrillic and Greek that show as Latin ones (from Unicode's
# confusables.txt): a label made only of these looks like a Latin name.
_LATIN_LOOKALIKES = frozenset(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u04bb\u04cf\u0501\u051b\u051d\u04af"
    "\u03b1\u03b9\u03ba\u03bd\u03bf\u03c1\u03c5"
)
# Scripts that are written together (UTS 39, "highly restrictive").
_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# The first word of a letter's Unicode name is its script, but for these.
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}


def _scripts(label: str) -> set[str]:
    """The scripts of a U-label's letters; digits, hyphens and marks belong to any."""
    scripts = set()
    for ch in label:
        if unicodedata.category(ch)[0] != "L":
            continue
        word = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
        scripts.add(_SCRIPT_ALIASES.get(word, word))
    return scripts


def confusable_label(label: str, *, tld: str = "") -> bool:
    """Whether a U-label may pass for another name: its letters are of
    several scripts (outside the CJK combinations), or it is Cyrillic or
    Greek made only of letters that look Latin (`аррӏе`), unless the name's
    top-level domain `tld` is of that script too (`сосо.рф`), as browsers
    judge it."""
    scripts = _scripts(label)
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS):
        return True
    lookalike = scripts & {"CYRILLIC", "GREEK"}
    letters = [ch for ch in label if unicodedata.category(ch)[0] == "L"]
    return (
        bool(lookalike) and not lookalike <= _scripts(tld) and all(ch in _LATIN_LOOKALIKES for ch in letters)
    )


def normal_domain(raw: str) -> tuple[str, str | None]:
    """A domain as it is compared and stored, and what is wrong with it (None: nothing).

    IDNA 2008 with the UTS 46 mapping (case, full-width forms), stored as
    A-labels (`xn--bcher-kva.example`): DNS and the domain claims hold one
    spelling of each name, which is the one Route53 and TLS need. One final
    dot (an absolute name) is dropped; empty labels, a label over 63 or a
    name over 253 characters, anything invisible, and confusable labels are
    refused.
    """
    name = raw.strip()
    name = name[:-1] if name.endswith(".") else name
    if not name:
        return "", "required"
    if hidden_character(name) or any(unicodedata.category(ch) == "Zs" for ch in name):
        return "", "no spaces, control, zero-width or bidi characters"
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True, transitional=False).decode("ascii")
        labels = idna.decode(ascii_name).split(".")
    except (idna.IDNAError, UnicodeError, ValueError):
        return "", "must be a domain name (IDNA 2008) such as app.example.com"
    if (
        len(ascii_name) > MAX_DOMAIN
        or len(labels) < 2
        or not all(labels)  # `example.com..`: idna takes one final dot, and one was dropped above
        or ascii_name.rsplit(".", 1)[-1].isdigit()
    ):
        return "", "must be a domain name (IDNA 2008) such as app.example.com"
    if any(confusable_label(label, tld=labels[-1]) for label in labels):
        return "", "a label mixes scripts or imitates a Latin name (confusable)"
    return ascii_name, None


def platform_domain_problem(domain: str, *, zone: str, app_host: str) -> str | None:
    """Why a normal domain is the platform's, or None: the managed zone's apex
    (inside the zone, namespace.zone_domain_problem says more), the shared
    application host and names under it, or a parent of either."""
    for host, what in ((zone, "the managed zone"), (app_host, "the application host")):
        if domain == host or host.endswith(f".{domain}"):
            return f"is {what} or a parent of it: the platform's"
    if domain.endswith(f".{app_host}"):
        return "is under the application host: the platform's"
    return None


# -- email --------------------------------------------------------------------


def normal_email(raw: str) -> tuple[str, str | None]:
    """An admin's email as it is compared and stored, and what is wrong with it.

    An RFC 5322 addr-spec (email-validator, syntax only: no DNS lookup), no
    quoted local part, no IP literal, no internationalised local part (the
    mail and identity providers are not all SMTPUTF8). Stored lowercase, the
    domain as A-labels: the address is the admin's user name, and the
    identity providers (Keycloak) compare user names and emails without case,
    so two spellings of one address must not be two users.
    """
    address = raw.strip()
    if not address:
        return "", "required"
    if len(address) > MAX_EMAIL or hidden_character(address):
        return "", "must be an email address such as ada@example.com"
    try:
        checked = email_validator.validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            # `.test` is the dev stack's; localhost, .invalid, .local and .onion are refused.
            test_environment=True,
        )
    except email_validator.EmailNotValidError:
        return "", "must be an email address such as ada@example.com"
    if len(checked.local_part) > MAX_EMAIL_LOCAL:
        return "", f"the part before @ has at most {MAX_EMAIL_LOCAL} characters"
    domain, problem = normal_domain(checked.ascii_domain)
    if problem is not None:
        return "", f"domain part: {problem}"
    return f"{checked.local_part.lower()}@{domain}", None


def tenant_id(value: str, field: str, violations: Violations, *, new: bool = False) -> None:
    """Checks a tenant id; a `new` one (a tenant to create) must not be reserved.

    Names of existing tenants are only checked for form, so that one made
    before an id was reserved can still be read and deleted.
    """
    if not value:
        violations.append((field, "required"))
    elif not valid_tenant_id(value):
        violations.append((field, f"must be {TENANT_ID_RULE}"))
    elif new and reserved_tenant_id(value):
        violations.append((field, "is reserved for the platform; choose another"))


def tenant_id_from_name(name: str, violations: Violations, *, field: str = "name") -> str:
    prefix, _, tid = name.partition("/")
    if prefix != "tenants" or not tid:
        violations.append((field, "must be tenants/{tenant_id}"))
        return ""
    tenant_id(tid, field, violations)
    return tid


def create_tenant(
    request: tenant_service_pb2.CreateTenantRequest,
    *,
    dns_zone: str | None = None,
    app_host: str | None = None,
) -> tuple[tenant_pb2.Tenant, Violations]:
    """Returns the normalised tenant to create and what is wrong with the request.

    `dns_zone` is the managed DNS zone (default: TENANTRY_DNS_ZONE, read as
    the infrastructure worker reads it): inside it a tenant's domains must be
    its own `<id>.<zone>` or names under it. `app_host` is the shared
    application host (default: TENANTRY_APP_HOSTNAME), which no tenant holds.
    Violations name the field and the rule, never the value (it may be personal data).
    """
    zone = namespace.dns_zone() if dns_zone is None else dns_zone
    app = namespace.app_hostname() if app_host is None else app_host
    violations: Violations = []
    tenant_id(request.tenant_id, "tenant_id", violations, new=True)
    given = request.tenant
    if not request.HasField("tenant"):
        violations.append(("tenant", "required"))
    display_name = display_text(
        given.display_name, "tenant.display_name", violations, limit=MAX_DISPLAY_NAME, required=True
    )
    if (
        given.plan_tier not in tenant_pb2.PlanTier.values()
        or given.plan_tier == tenant_pb2.PLAN_TIER_UNSPECIFIED
    ):
        violations.append(
            ("tenant.plan_tier", "required: one of PLAN_TIER_POOLED, PLAN_TIER_BRIDGE, PLAN_TIER_SILO")
        )
    if len(given.domains) > MAX_DOMAINS:
        violations.append(("tenant.domains", f"at most {MAX_DOMAINS} domains"))
    domains: list[str] = []
    for i, raw in enumerate(given.domains[: MAX_DOMAINS + 1]):
        field = f"tenant.domains[{i}]"
        domain, problem = normal_domain(raw)
        domains.append(domain)
        if problem is None and domain in domains[:i]:
            problem = "duplicate"
        if problem is None:
            problem = namespace.zone_domain_problem(domain, tenant_id=request.tenant_id, zone=zone)
        if problem is None:
            problem = platform_domain_problem(domain, zone=zone, app_host=app)
        if problem is not None:
            violations.append((field, problem))
    email, problem = normal_email(given.admin.email)
    if problem is not None:
        violations.append(("tenant.admin.email", problem))
    names = {
        field: display_text(
            getattr(given.admin, field),
            f"tenant.admin.{field}",
            violations,
            limit=MAX_PERSON_NAME,
            required=False,
        )
        for field in ("given_name", "family_name")
    }
    tenant = tenant_pb2.Tenant(
        tenant_id=request.tenant_id,
        display_name=display_name,
        plan_tier=given.plan_tier,
        domains=domains,
        admin=tenant_pb2.AdminContact(email=email, **names),
    )
    return tenant, violations


def page_size(value: int, violations: Violations, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    if value < 0:
        violations.append(("page_size", "must not be negative"))
    return min(value or default, MAX_PAGE_SIZE)


def list_query(
    request: tenant_service_pb2.ListTenantsRequest, violations: Violations
) -> filters.Query | None:
    """ListTenants' filter and order_by; None if either is wrong (each says why)."""
    try:
        groups = filters.parse_filter(request.filter)
    except filters.FilterError as err:
        violations.append(("filter", str(err)))
        groups = None
    try:
        order = filters.parse_order(request.order_by)
    except filters.FilterError as err:
        violations.append(("order_by", str(err)))
        return None
    return None if groups is None else filters.Query(groups=groups, order=order)


def grace_period(request: tenant_service_pb2.DeleteTenantRequest, violations: Violations) -> timedelta:
    """The wait a deletion asks for: none for a hard delete, else the request's or the default."""
    given = request.HasField("grace_period")
    if request.hard_delete:
        if given:
            violations.append(("grace_period", "not allowed with hard_delete, which has no grace period"))
        return timedelta(0)
    if not given:
        return DEFAULT_GRACE_PERIOD
    period = request.grace_period
    rule = f"must be from 1 second to {MAX_GRACE_PERIOD.days} days; use hard_delete for none"
    # Checked on the raw fields first: a huge value would overflow a timedelta.
    if (
        period.seconds < 0
        or not 0 <= period.nanos < NANOS_PER_SECOND
        or period.seconds > MAX_GRACE_PERIOD.total_seconds()
    ):
        violations.append(("grace_period", rule))
        return timedelta(0)
    wait = period.ToTimedelta()
    if not timedelta(seconds=1) <= wait <= MAX_GRACE_PERIOD:
        violations.append(("grace_period", rule))
    return wait
