{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "spendwatch.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: "<release>" when it already contains the chart name. */}}
{{- define "spendwatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spendwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spendwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "worker"). */}}
{{- define "spendwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spendwatch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spendwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spendwatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spendwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The spendwatch YAML: what the chart must set, deep-merged under .Values.config. */}}
{{- define "spendwatch.config" -}}
{{- $chart := dict
  "data_dir" "/var/lib/spendwatch"
  "kafka" (dict "bootstrap_servers" (required "kafka.bootstrapServers is required (host:port of your Kafka)" .Values.kafka.bootstrapServers))
  "streams" (dict "web_host" "0.0.0.0" "web_port" (int .Values.ports.worker))
  "clickhouse" (dict
    "url" (required "clickhouse.url is required (http(s)://host:port of your ClickHouse)" .Values.clickhouse.url)
    "database" .Values.clickhouse.database
    "username" .Values.clickhouse.username
    "password_env" .Values.clickhouse.passwordEnv)
  "ingest" (dict "host" "0.0.0.0" "port" (int .Values.ports.ingest))
-}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $chart) -}}
{{- end -}}

{{/* Pod annotations: config checksum (roll pods on config change) and Prometheus scraping. */}}
{{- define "spendwatch.podAnnotations" -}}
checksum/config: {{ include "spendwatch.config" .root | sha256sum }}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment of every spendwatch container: secrets by reference, never by value. */}}
{{- define "spendwatch.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SPENDWATCH_HOME
  value: /var/lib/spendwatch
{{- range $name, $ref := .Values.secrets.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets.env.%s.name is required" $name) $ref.name }}
      key: {{ required (printf "secrets.env.%s.key is required" $name) $ref.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every pod mounts: the config, a writable /tmp. */}}
{{- define "spendwatch.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "spendwatch.fullname" . }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "spendwatch.commonMounts" -}}
- name: config
  mountPath: /etc/spendwatch
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "spendwatch.podSpecCommon" -}}
serviceAccountName: {{ include "spendwatch.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* HTTP probes on /healthz (liveness) and /readyz (readiness) of a named port. */}}
{{- define "spendwatch.probes" -}}
# Liveness is lenient: a worker applying a large batch or committing many states can
# hold its event loop for tens of seconds, which is work, not a hang.
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 20
  timeoutSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
