{{/* Chart name, truncated to a DNS label. */}}
{{- define "harmony.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, prefixed to the chart name unless it already contains it. */}}
{{- define "harmony.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "harmony.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "harmony.selectorLabels" -}}
app.kubernetes.io/name: {{ include "harmony.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "harmony.labels" -}}
helm.sh/chart: {{ include "harmony.chart" . }}
{{ include "harmony.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: harmony
{{- end }}

{{- define "harmony.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "harmony.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The kopf peering name of this release's replicas: peering.name, else the release's full name and a hash of
its shard (watchNamespaces and selector). Replicas of one release meet under it; two releases serving
different shards never share it (kopf would pause one shard's operator in favour of the other's, and that
shard would never be served).
*/}}
{{- define "harmony.peeringName" -}}
{{- if .Values.peering.name }}
{{- .Values.peering.name }}
{{- else }}
{{- $shard := dict "namespaces" (.Values.watchNamespaces | default list) "selector" (.Values.selector | default dict) }}
{{- printf "%s-%s" (include "harmony.fullname" . | trunc 54 | trimSuffix "-") (toJson $shard | sha256sum | trunc 8) }}
{{- end }}
{{- end }}

{{- define "harmony.checkpointClaim" -}}
{{- default (printf "%s-checkpoints" (include "harmony.fullname" .)) .Values.checkpoints.existingClaim }}
{{- end }}

{{/*
The RBAC rules of the operator, for one scope ("cluster" or "namespaced"): exactly what
src/harmony/operator/kube.py and kopf need, no wildcards. tests/test_helm_chart.py holds the same table.
Ready replicas: get on apps targets themselves (status.readyReplicas); list pods only when a scale target
of another group is listed (its pods' Ready condition, as the HPA counts them).
*/}}
{{- define "harmony.rules" -}}
{{- $root := index . 0 }}
{{- $scope := index . 1 }}
# kopf: watch HarmonyAutoscalers and patch finalizers/annotations.
- apiGroups: [harmony.dev]
  resources: [harmonyautoscalers]
  verbs: [get, list, watch, patch]
# The operator's status writes.
- apiGroups: [harmony.dev]
  resources: [harmonyautoscalers/status]
  verbs: [get, patch]
{{- $podTargets := false }}
{{- range $root.Values.rbac.scaleTargets }}
# Scale subresources of the targets.
- apiGroups: [{{ .apiGroup | quote }}]
  resources:
  {{- range .resources }}
    - {{ printf "%s/scale" . }}
  {{- end }}
  verbs: [get, patch]
{{- if eq .apiGroup "apps" }}
# Ready replicas of apps targets: status.readyReplicas of the object itself.
- apiGroups: [apps]
  resources:
  {{- range .resources }}
    - {{ . }}
  {{- end }}
  verbs: [get]
{{- else }}
{{- $podTargets = true }}
{{- end }}
{{- end }}
{{- if $podTargets }}
# Ready replicas of other targets: their pods' Ready condition, found by the scale's status.selector.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
# Events on HarmonyAutoscalers (the operator's and kopf's).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and $root.Values.rbac.prometheusSecrets.enabled (or (eq $scope "namespaced") (not $root.Values.watchNamespaces)) }}
{{ include "harmony.secretRule" $root }}
{{- end }}
{{- if eq $scope "cluster" }}
# kopf, cluster-wide: notice namespaces appearing and disappearing.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- if $root.Values.peering.enabled }}
# kopf peering between replicas of a shard.
- apiGroups: [kopf.dev]
  resources: [{{ if and (eq $scope "cluster") (not $root.Values.watchNamespaces) }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  verbs: [get, list, watch, patch, create]
{{- end }}
{{- end }}


{{/*
spec.prometheus.secretRef: get a Secret by name (no list or watch: nothing is enumerated), optionally only
of rbac.prometheusSecrets.names. RBAC cannot say "the Secret an object in this namespace names", so the
namespaces are the operator's own (a Role per watched namespace, or cluster-wide when it serves all).
*/}}
{{- define "harmony.secretRule" -}}
# spec.prometheus.secretRef: read the Secret an autoscaler names (get only).
- apiGroups: [""]
  resources: [secrets]
  {{- with .Values.rbac.prometheusSecrets.names }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  verbs: [get]
{{- end }}
