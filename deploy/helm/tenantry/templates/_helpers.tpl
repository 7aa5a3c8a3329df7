{{/* The name every object of a release starts with. */}}
{{- define "tenantry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "process" adds the process kind. */}}
{{- define "tenantry.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .process }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "tenantry.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .process }}
{{- end -}}

{{- define "tenantry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tenantry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Fails the release when a ConfigMap would carry a credential. */}}
{{- define "tenantry.plainConfig" -}}
{{- range $key, $value := .config }}
{{- if regexMatch "(PASSWORD|API_KEY|DATABASE_URL|DATABASE_ADMIN_URL|PAYLOAD_KEYS$|SECRET|TOKEN$)" $key }}
{{- fail (printf "%s: %s is a credential; put it in %s.secrets (a Secret), not in config" $.where $key $.where) }}
{{- end }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The Secret the Temporal API key is read from, and its key. */}}
{{- define "tenantry.temporalApiKeySecret" -}}
{{- if .Values.temporal.apiKey.existingSecret -}}
{{- .Values.temporal.apiKey.existingSecret -}}
{{- else -}}
{{- printf "%s-temporal-api-key" (include "tenantry.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tenantry.temporalApiKeyEnabled" -}}
{{- if or .Values.temporal.apiKey.existingSecret .Values.temporal.apiKey.value -}}true{{- end -}}
{{- end -}}

{{- define "tenantry.temporalMtls" -}}
{{- if and .Values.temporal.tls.enabled .Values.temporal.tls.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The worker processes: every process with a task queue. */}}
{{- define "tenantry.isWorker" -}}
{{- if .taskQueue -}}true{{- end -}}
{{- end -}}
