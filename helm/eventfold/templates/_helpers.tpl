{{/*
Names, labels and the pieces every workload shares. Components: command-service, outbox-relay,
projector (one Deployment per read model), migrations.
*/}}

{{- define "eventfold.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eventfold.fullname" -}}
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

{{/* Name of a component's objects: (dict "root" $ "component" "outbox-relay") */}}
{{- define "eventfold.componentName" -}}
{{- printf "%s-%s" (include "eventfold.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eventfold.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: (dict "root" $ "component" "projector" "readModel" "graph") */}}
{{- define "eventfold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventfold.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .readModel }}
eventfold.io/read-model: {{ . }}
{{- end }}
{{- end }}

{{/* All labels: selector labels plus version and manager. Same argument as selectorLabels. */}}
{{- define "eventfold.labels" -}}
helm.sh/chart: {{ include "eventfold.chart" .root }}
{{ include "eventfold.selectorLabels" . }}
app.kubernetes.io/part-of: eventfold
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "eventfold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eventfold.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the chart-managed credentials Secret. */}}
{{- define "eventfold.credentialsSecret" -}}
{{- printf "%s-credentials" (include "eventfold.fullname" .) }}
{{- end }}

{{/* Image reference: (dict "root" $ "image" .Values.relay.image) */}}
{{- define "eventfold.image" -}}
{{- $g := .root.Values.image }}
{{- $repo := .image.repository }}
{{- if $g.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $g.registry) $repo }}{{ end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default $g.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Credentials. A credential is {username, password, existingSecret, usernameKey, passwordKey[, urlKey]}.
Its Secret is its own existingSecret, else the global existingSecret, else the chart-managed one; its
password key is passwordKey, else the chart's key name for it (the `key` argument).
*/}}
{{- define "eventfold.credSecret" -}}
{{- .cred.existingSecret | default .root.Values.existingSecret | default (include "eventfold.credentialsSecret" .root) }}
{{- end }}

{{/* True ("true") when the credential's password lives in a chart-managed Secret. */}}
{{- define "eventfold.credManaged" -}}
{{- if not (.cred.existingSecret | default .root.Values.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Env entries USER_VAR and PASSWORD_VAR of a credential:
(dict "root" $ "cred" $cred "key" "neo4j-password" "userVar" "NEO4J_USER" "passwordVar" "NEO4J_PASSWORD" "secret" "")
`secret` overrides the chart-managed Secret's name (the migration hook has its own).
*/}}
{{- define "eventfold.credEnv" -}}
{{- $managed := include "eventfold.credManaged" . }}
{{- $secret := include "eventfold.credSecret" . }}
{{- if and $managed .secret }}{{ $secret = .secret }}{{ end }}
- name: {{ .userVar }}
{{- if and (not $managed) .cred.usernameKey }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .cred.usernameKey }}
{{- else }}
  value: {{ .cred.username | quote }}
{{- end }}
- name: {{ .passwordVar }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .cred.passwordKey | default .key }}
{{- end }}

{{/* Chart key of a PostgreSQL user's password: postgresql-<ref>-password */}}
{{- define "eventfold.pgKey" -}}
{{- printf "postgresql-%s-password" . }}
{{- end }}

{{- define "eventfold.kafkaKey" -}}
{{- printf "kafka-%s-password" . }}
{{- end }}

{{/*
DATABASE_URL and friends for the postgresql.users entry `user`:
(dict "root" $ "user" "commandService" "maxConnections" 10 "secret" "")
Either the whole URL from the Secret (urlKey), or user and password from the Secret composed with
$(VAR) references (defined just before, as Kubernetes requires).
*/}}
{{- define "eventfold.databaseEnv" -}}
{{- $pg := .root.Values.postgresql }}
{{- $cred := index $pg.users .user }}
{{- $managed := include "eventfold.credManaged" (dict "root" .root "cred" $cred) }}
{{- if and $cred.urlKey (not $managed) }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "eventfold.credSecret" (dict "root" .root "cred" $cred) }}
      key: {{ $cred.urlKey }}
{{- else }}
{{- include "eventfold.credEnv" (dict "root" .root "cred" $cred "key" (include "eventfold.pgKey" .user) "userVar" "DATABASE_USER" "passwordVar" "DATABASE_PASSWORD" "secret" .secret) }}
{{- $params := list (printf "sslmode=%s" $pg.sslMode) }}
{{- if .root.Values.caBundle.configMapName }}
{{- $params = append $params (printf "sslrootcert=/etc/eventfold/ca/%s" .root.Values.caBundle.key) }}
{{- end }}
- name: DATABASE_URL
  value: {{ printf "postgres://$(DATABASE_USER):$(DATABASE_PASSWORD)@%s:%v/%s?%s" $pg.host $pg.port $pg.database (join "&" $params) | quote }}
{{- end }}
- name: DATABASE_MAX_CONNECTIONS
  value: {{ .maxConnections | quote }}
{{- end }}

{{/* KAFKA_SASL_* for the kafka.users entry `user`: (dict "root" $ "user" "outboxRelay") */}}
{{- define "eventfold.kafkaEnv" -}}
{{- $k := .root.Values.kafka }}
{{- if hasPrefix "sasl_" (lower $k.securityProtocol) }}
{{- $cred := index $k.users .user }}
{{- include "eventfold.credEnv" (dict "root" .root "cred" $cred "key" (include "eventfold.kafkaKey" .user) "userVar" "KAFKA_SASL_USERNAME" "passwordVar" "KAFKA_SASL_PASSWORD" "secret" "") }}
{{- end }}
{{- end }}

{{- define "eventfold.registryEnv" -}}
{{- with .Values.schemaRegistry.auth }}
{{- if .enabled }}
{{- include "eventfold.credEnv" (dict "root" $ "cred" . "key" "schema-registry-password" "userVar" "SCHEMA_REGISTRY_USERNAME" "passwordVar" "SCHEMA_REGISTRY_PASSWORD" "secret" "") }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eventfold.neo4jEnv" -}}
{{- include "eventfold.credEnv" (dict "root" . "cred" .Values.neo4j.auth "key" "neo4j-password" "userVar" "NEO4J_USER" "passwordVar" "NEO4J_PASSWORD" "secret" "") }}
{{- end }}

{{/* Probes on the admin port (the public port keeps only /healthz): (dict "probes" .Values.relay.probes) */}}
{{- define "eventfold.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: admin}
  {{- toYaml .probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  {{- toYaml .probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  {{- toYaml .probes.readiness | nindent 2 }}
{{- end }}

{{/* Path of the JWKS file the services read when auth.jwksUrl is empty. */}}
{{- define "eventfold.jwksFile" -}}
{{- printf "/etc/eventfold/auth/%s" .Values.auth.jwks.key }}
{{- end }}

{{/* ConfigMap holding the JWKS file: the existing one, else the chart's <fullname>-jwks. */}}
{{- define "eventfold.jwksConfigMap" -}}
{{- .Values.auth.jwks.existingConfigMap | default (printf "%s-jwks" (include "eventfold.fullname" .)) }}
{{- end }}

{{/* Mounts of a service container: those of every container plus the JWKS file (without jwksUrl). */}}
{{- define "eventfold.serviceVolumeMounts" -}}
{{ include "eventfold.volumeMounts" . }}
{{- if not .Values.auth.jwksUrl }}
- name: jwks
  mountPath: /etc/eventfold/auth
  readOnly: true
{{- end }}
{{- end }}

{{/* Mounts of every container: the writable /tmp and the optional CA bundle. */}}
{{- define "eventfold.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.caBundle.configMapName }}
- name: ca-bundle
  mountPath: /etc/eventfold/ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "eventfold.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.caBundle.configMapName }}
- name: ca-bundle
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}

{{- define "eventfold.caEnv" -}}
{{- if .Values.caBundle.configMapName }}
- name: SSL_CERT_FILE
  value: {{ printf "/etc/eventfold/ca/%s" .Values.caBundle.key | quote }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by the Deployments:
(dict "root" $ "c" .Values.relay "component" "outbox-relay" "readModel" "")
*/}}
{{- define "eventfold.podCommon" -}}
serviceAccountName: {{ include "eventfold.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ .c.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: {{ .root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "eventfold.selectorLabels" (dict "root" .root "component" .component "readModel" .readModel) | nindent 8 }}
{{- end }}
volumes:
  {{- include "eventfold.volumes" .root | nindent 2 }}
  {{- if not .root.Values.auth.jwksUrl }}
  - name: jwks
    configMap:
      name: {{ include "eventfold.jwksConfigMap" .root }}
      items:
        - key: {{ .root.Values.auth.jwks.key }}
          path: {{ .root.Values.auth.jwks.key }}
  {{- end }}
{{- end }}

{{/* Pod annotations: checksums of config and credentials (changes roll the pods), scrape hints
(the admin port), the workload's own annotations. (dict "root" $ "c" $c "component" "outbox-relay") */}}
{{- define "eventfold.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/credentials: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "eventfold.adminPort" .component | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Container port of a service's public API (HTTP_ADDR): the component name gives it. */}}
{{- define "eventfold.httpPort" -}}
{{- index (dict "command-service" 8080 "outbox-relay" 8082 "projector" 8083) . }}
{{- end }}

{{/* Container port of a service's admin plane (ADMIN_ADDR): /healthz, /readyz, /metrics, admin API. */}}
{{- define "eventfold.adminPort" -}}
{{- index (dict "command-service" 9080 "outbox-relay" 9082 "projector" 9083) . }}
{{- end }}

{{/* The two ports every service listens on, for a component name. */}}
{{- define "eventfold.ports" -}}
- name: http
  containerPort: {{ include "eventfold.httpPort" . }}
  protocol: TCP
- name: admin
  containerPort: {{ include "eventfold.adminPort" . }}
  protocol: TCP
{{- end }}

{{/*
A read model's effective autoscaling, as YAML: projector.autoscaling with the read model's own keys
set over it (key by key, so `enabled: false` wins, which a plain merge would drop).
(dict "root" $ "rm" $readModel)
*/}}
{{- define "eventfold.readModelAutoscaling" -}}
{{- $as := deepCopy .root.Values.projector.autoscaling }}
{{- range $k, $v := (.rm.autoscaling | default dict) }}
{{- if and (eq $k "external") (kindIs "map" $v) }}
{{- $ext := $as.external }}
{{- range $k2, $v2 := $v }}{{ $_ := set $ext $k2 $v2 }}{{ end }}
{{- else }}
{{- $_ := set $as $k $v }}
{{- end }}
{{- end }}
{{- toYaml $as }}
{{- end }}

{{/* The consumer group a read model's lag metric is selected by. */}}
{{- define "eventfold.consumerGroup" -}}
{{- .consumerGroup | default (printf "eventfold-projector-%s" .name) }}
{{- end }}

{{/*
The service workloads as a YAML list of {component, readModel, name}: command-service, outbox-relay
and one projector per read model (`name` is the suffix of their objects' names).
*/}}
{{- define "eventfold.workloads" -}}
{{- $list := list (dict "component" "command-service" "readModel" "" "name" "command-service") (dict "component" "outbox-relay" "readModel" "" "name" "outbox-relay") }}
{{- range .Values.projector.readModels }}
{{- $list = append $list (dict "component" "projector" "readModel" .name "name" (printf "projector-%s" .name)) }}
{{- end }}
{{- toYaml $list }}
{{- end }}

{{/* Port of a URL (scheme://host:port/...), else `default`: (dict "url" "https://r:8081" "default" 443) */}}
{{- define "eventfold.urlPort" -}}
{{- $host := (urlParse .url).host }}
{{- $parts := splitList ":" $host }}
{{- if and (gt (len $parts) 1) (regexMatch "^[0-9]+$" (last $parts)) }}
{{- last $parts }}
{{- else if hasPrefix "http://" (lower .url) }}80
{{- else }}{{ .default }}
{{- end }}
{{- end }}
