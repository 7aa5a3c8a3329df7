"""Input validation of the public API: what is refused and how it is normalised."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tenant_api import validation
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2


def request(**overrides: object) -> tenant_service_pb2.CreateTenantRequest:
    tenant = tenant_pb2.Tenant(
        display_name="Acme Corp",
        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
        domains=["acme.example.com"],
        admin=tenant_pb2.AdminContact(email="ada@acme.example.com", given_name="Ada"),
    )
    req = tenant_service_pb2.CreateTenantRequest(tenant_id="acme", tenant=tenant)
    for path, value in overrides.items():
        target: object = req
        *parents, leaf = path.split("__")
        for part in parents:
            target = getattr(target, part)
        if isinstance(value, list):
            del getattr(target, leaf)[:]
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return req


def fields(req: tenant_service_pb2.CreateTenantRequest) -> set[str]:
    _, violations = validation.create_tenant(req)
    return {f for f, _ in violations}


def test_a_good_request_passes_and_is_normalised() -> None:
    tenant, violations = validation.create_tenant(
        request(tenant__domains=[" Acme.Example.COM. "], tenant__admin__email="Ada@Acme.example.com")
    )
    assert violations == []
    assert list(tenant.domains) == ["acme.example.com"]
    assert tenant.admin.email == "ada@acme.example.com"
    assert tenant.tenant_id == "acme"


@pytest.mark.parametrize(
    "tenant_id",
    ["", "a", "ab", "Acme", "1acme", "acme-", "ac_me", "a" * 33, 'a"; drop schema registry; --', "acme.corp"],
)
def test_bad_tenant_ids_are_refused(tenant_id: str) -> None:
    assert fields(request(tenant_id=tenant_id)) == {"tenant_id"}


@pytest.mark.parametrize("tenant_id", ["abc", "acme-corp", "a" * 32, "t0-1"])
def test_good_tenant_ids_pass(tenant_id: str) -> None:
    assert fields(request(tenant_id=tenant_id)) == set()


@pytest.mark.parametrize(
    "domain",
    [
        "localhost",
        "-a.example.com",
        "a..example.com",
        "exa mple.com",
        "a" * 64 + ".com",
        "10.0.0.1",
        "x.y_z.com",
    ],
)
def test_bad_domains_are_refused(domain: str) -> None:
    assert fields(request(tenant__domains=[domain])) == {"tenant.domains[0]"}


def test_duplicate_and_too_many_domains_are_refused() -> None:
    assert fields(request(tenant__domains=["a.example.com", "A.example.com"])) == {"tenant.domains[1]"}
    assert "tenant.domains" in fields(request(tenant__domains=[f"d{i}.example.com" for i in range(11)]))


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.com", "ada@localhost", "a da@example.com", "a" * 250 + "@x.com"]
)
def test_bad_emails_are_refused(email: str) -> None:
    assert fields(request(tenant__admin__email=email)) == {"tenant.admin.email"}


def test_unknown_and_unset_tiers_are_refused_and_every_tier_is_accepted() -> None:
    assert fields(request(tenant__plan_tier=0)) == {"tenant.plan_tier"}
    assert fields(request(tenant__plan_tier=99)) == {"tenant.plan_tier"}
    for tier in (tenant_pb2.PLAN_TIER_POOLED, tenant_pb2.PLAN_TIER_BRIDGE, tenant_pb2.PLAN_TIER_SILO):
        assert fields(request(tenant__plan_tier=tier)) == set()


def test_oversize_and_control_characters_are_refused() -> None:
    assert fields(request(tenant__display_name="x" * 201)) == {"tenant.display_name"}
    assert fields(request(tenant__display_name="   ")) == {"tenant.display_name"}
    assert fields(request(tenant__display_name="bad\x00name")) == {"tenant.display_name"}
    assert fields(request(tenant__admin__given_name="x" * 101)) == {"tenant.admin.given_name"}


def test_missing_tenant_reports_every_field() -> None:
    req = tenant_service_pb2.CreateTenantRequest(tenant_id="acme")
    assert {"tenant", "tenant.display_name", "tenant.plan_tier", "tenant.admin.email"} <= fields(req)


def test_names_must_be_tenant_resource_names() -> None:
    for name, ok in [("tenants/acme", True), ("acme", False), ("tenants/", False), ("projects/acme", False)]:
        violations: validation.Violations = []
        validation.tenant_id_from_name(name, violations)
        assert (violations == []) is ok, name


def test_page_size_defaults_and_caps() -> None:
    violations: validation.Violations = []
    assert validation.page_size(0, violations) == validation.DEFAULT_PAGE_SIZE
    assert validation.page_size(5000, violations) == validation.MAX_PAGE_SIZE
    assert violations == []
    validation.page_size(-1, violations)
    assert violations == [("page_size", "must not be negative")]


# -- emails, domains and names (issue 10) ---------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        ".ada@example.com",
        "ada.@example.com",
        "a..da@example.com",
        '"a da"@example.com',
        "ada@[192.0.2.1]",
        "ädä@example.com",
        "ada@example.com..",
        "ada@x.invalid",
        "ada@host.local",
        "Ada <ada@example.com>",
        "ada@example.com\u200b",
        "ada@p\u0430ypal.com",
        "a" * 65 + "@example.com",
    ],
)
def test_emails_are_rfc_5322_addr_specs(email: str) -> None:
    _, violations = validation.create_tenant(request(tenant__admin__email=email))
    assert [f for f, _ in violations] == ["tenant.admin.email"]
    # The rule, never the value: an email is personal data.
    assert all(email not in d and "example.com." not in d for _, d in violations)


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("Ada.Lovelace+ops@Example.COM", "ada.lovelace+ops@example.com"),
        ("ada@Bücher.Example", "ada@xn--bcher-kva.example"),
        ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
        ("  ada@acme.tenantry.test ", "ada@acme.tenantry.test"),
    ],
)
def test_emails_are_stored_lowercase_with_a_label_domains(email: str, stored: str) -> None:
    tenant, violations = validation.create_tenant(request(tenant__admin__email=email))
    assert violations == []
    assert tenant.admin.email == stored


@pytest.mark.parametrize(
    "domain",
    [
        "example.com..",
        ".example.com",
        "a..b.example.com",
        "a" * 64 + ".example.com",
        ".".join(["a" * 63] * 4) + ".com",  # 256 characters
        "exa\u200bmple.com",
        "exa\u202emple.com",
        "ex\u00a0ample.com",
        "p\u0430ypal.com",  # Latin with a Cyrillic a
        "\u0430\u0440\u0440\u04cf\u0435.com",  # all Cyrillic, reads "apple"
        "xn--pypal-4ve.com",  # the same mixed label given as an A-label
        "xn--abc.com",  # not Punycode of anything valid
        "ab--c.example.com",
        "_dmarc.example.com",
    ],
)
def test_domains_are_idna_2008_names(domain: str) -> None:
    assert fields(request(tenant__domains=[domain])) == {"tenant.domains[0]"}


@pytest.mark.parametrize(
    ("domain", "stored"),
    [
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ACME.example.com.", "acme.example.com"),
        ("\uff21\uff23\uff2d\uff25\u3002example\u3002com", "acme.example.com"),  # full-width, mapped
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),  # one script (Cyrillic) throughout
        ("сосо.рф", "xn--n1aahb.xn--p1ai"),  # Latin-looking, but under a Cyrillic TLD
        ("例え.jp", "xn--r8jz45g.jp"),  # Han with Hiragana, as Japanese is written
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: ß is itself, not "ss"
        (".".join(["a" * 63] * 3) + ".example", ".".join(["a" * 63] * 3) + ".example"),  # 199
    ],
)
def test_domains_are_stored_as_a_labels(domain: str, stored: str) -> None:
    tenant, violations = validation.create_tenant(request(tenant__domains=[domain]))
    assert violations == []
    assert list(tenant.domains) == [stored]


def test_one_name_in_two_spellings_is_a_duplicate() -> None:
    assert fields(request(tenant__domains=["bücher.example", "xn--bcher-kva.example"])) == {
        "tenant.domains[1]"
    }


@pytest.mark.parametrize(
    "domain",
    ["app.tenantry.test", "API.App.Tenantry.Test.", "tenantry.test", "tenants.tenantry.test"],
)
def test_the_platforms_own_hosts_are_refused(domain: str) -> None:
    problems = dict(
        validation.create_tenant(
            request(tenant__domains=[domain]), dns_zone="tenants.tenantry.test", app_host="app.tenantry.test"
        )[1]
    )
    assert list(problems) == ["tenant.domains[0]"]


def test_the_application_host_is_read_from_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_APP_HOSTNAME", "Portal.Example.NET.")
    assert fields(request(tenant__domains=["portal.example.net"])) == {"tenant.domains[0]"}
    assert fields(request(tenant__domains=["app.tenantry.test"])) == set()


@pytest.mark.parametrize(
    "hidden",
    [
        "\u202e",
        "\u2066",
        "\u200f",
        "\u061c",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\u00ad",
        "\x07",
        "\u2028",
        "\ue000",
    ],
)
@pytest.mark.parametrize(
    "field", ["tenant__display_name", "tenant__admin__given_name", "tenant__admin__family_name"]
)
def test_control_bidi_and_zero_width_characters_are_refused_in_names(hidden: str, field: str) -> None:
    assert fields(request(**{field: f"Ac{hidden}me"})) == {field.replace("__", ".")}


def test_names_are_nfc_and_may_be_any_script() -> None:
    tenant, violations = validation.create_tenant(
        request(
            tenant__display_name="Cafe\u0301 Ünïcode 株式会社",
            tenant__admin__given_name="Zoë",
            tenant__admin__family_name="Łukasiewicz-مرحبا",
        )
    )
    assert violations == []
    assert tenant.display_name == "Caf\u00e9 Ünïcode 株式会社"


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (86400, 0, True),
        (1, 999_999_999, True),
        (1, 1_000_000_000, False),
        (86400, 2**31 - 1, False),
        (86400, -1, False),
        (-86400, 0, False),
        (-1, -5, False),
        (0, 999_999_999, False),  # under a second
        (2**63 - 1, 0, False),
    ],
)
def test_grace_periods_are_proper_durations(seconds: int, nanos: int, ok: bool) -> None:
    req = tenant_service_pb2.DeleteTenantRequest(name="tenants/acme")
    req.grace_period.seconds, req.grace_period.nanos = seconds, nanos
    violations: validation.Violations = []
    validation.grace_period(req, violations)
    assert (violations == []) is ok
    assert [f for f, _ in violations] == ([] if ok else ["grace_period"])


_DOMAIN_RULES = {
    "required",
    "no spaces, control, zero-width or bidi characters",
    "must be a domain name (IDNA 2008) such as app.example.com",
    "a label mixes scripts or imitates a Latin name (confusable)",
}
_EMAIL_RULES = {
    "required",
    "must be an email address such as ada@example.com",
    "the part before @ has at most 64 characters",
    *(f"domain part: {rule}" for rule in _DOMAIN_RULES),
}
_ANY_TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from("abcxyz-.@\u0430\u0440\u03bf\u00fc\u4e00")),
    max_size=80,
)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(_ANY_TEXT)
def test_any_text_is_a_domain_or_a_rule_and_the_stored_form_is_stable(raw: str) -> None:
    domain, problem = validation.normal_domain(raw)
    if problem is None:
        assert domain.isascii() and domain == domain.lower() and len(domain) <= 253
        assert validation.normal_domain(domain) == (domain, None)
    else:
        # A fixed rule, never the value.
        assert domain == "" and problem in _DOMAIN_RULES


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.one_of(_ANY_TEXT, st.builds(lambda a, b: f"{a}@{b}", _ANY_TEXT, _ANY_TEXT)))
def test_any_text_is_an_email_or_a_rule_and_the_stored_form_is_stable(raw: str) -> None:
    email, problem = validation.normal_email(raw)
    if problem is None:
        assert email.isascii() and email == email.lower() and len(email) <= validation.MAX_EMAIL
        assert validation.normal_email(email) == (email, None)
    else:
        assert email == "" and problem in _EMAIL_RULES
