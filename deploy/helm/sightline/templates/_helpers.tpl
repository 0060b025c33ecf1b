{{- define "sightline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sightline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sightline.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sightline.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sightline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sightline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one role: call with (list $ "gateway"). */}}
{{- define "sightline.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "sightline.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "sightline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sightline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sightline.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The all-in-one's Service, which gateways forward to. */}}
{{- define "sightline.storeService" -}}
{{ include "sightline.fullname" . }}-store
{{- end }}

{{- define "sightline.gatewayHeadless" -}}
{{ include "sightline.fullname" . }}-gateway-headless
{{- end }}

{{- define "sightline.gatewayServerName" -}}
{{ default (printf "%s.%s.svc.cluster.local" (include "sightline.gatewayHeadless" .) .Release.Namespace) .Values.gateway.tlsServerName }}
{{- end }}

{{/* Probes on the health_check extension, with a start budget for WAL replay. */}}
{{- define "sightline.probes" -}}
startupProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 5
{{- end }}

{{- define "sightline.requireAuth" -}}
{{- if not .Values.auth.tokenSecret }}
{{- fail "auth.tokenSecret is required when agent or gateway is enabled: a Secret with the key \"token\"" }}
{{- end }}
{{- end }}
