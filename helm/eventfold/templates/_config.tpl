{{/*
Non-secret settings of each component, as ConfigMap data (the same text feeds the pods' checksum
annotation, so a change rolls the pods). Credentials are never here: they come from Secrets as env.
*/}}

{{/* Settings of every service: (dict "root" $ "component" "outbox-relay") */}}
{{- define "eventfold.config.common" -}}
HTTP_ADDR: {{ printf "0.0.0.0:%d" (include "eventfold.httpPort" .component | int) | quote }}
ADMIN_ADDR: {{ printf "0.0.0.0:%d" (include "eventfold.adminPort" .component | int) | quote }}
LOG_FORMAT: {{ .root.Values.log.format | quote }}
RUST_LOG: {{ .root.Values.log.level | quote }}
EVENTFOLD_PROFILE: {{ .root.Values.profile | quote }}
DATABASE_INSECURE: {{ .root.Values.postgresql.insecure | quote }}
{{ include "eventfold.config.auth" .root }}
{{- end }}

{{/* AUTH_*: how every service checks the JWTs of its public and admin API. */}}
{{- define "eventfold.config.auth" -}}
{{- $a := .Values.auth -}}
AUTH_MODE: {{ $a.mode | quote }}
{{- if $a.jwksUrl }}
AUTH_JWKS_URL: {{ $a.jwksUrl | quote }}
{{- else }}
AUTH_JWKS_FILE: {{ include "eventfold.jwksFile" . | quote }}
{{- end }}
AUTH_ISSUER: {{ $a.issuer | quote }}
AUTH_AUDIENCE: {{ $a.audience | quote }}
AUTH_LEEWAY_SECONDS: {{ $a.leewaySeconds | int64 | quote }}
AUTH_SCOPE_CLAIM: {{ $a.scopeClaim | quote }}
AUTH_TENANT_CLAIM: {{ $a.tenantClaim | quote }}
AUTH_ACTOR_KIND_CLAIM: {{ $a.actorKindClaim | quote }}
AUTH_JWKS_MIN_REFRESH_SECONDS: {{ $a.jwksMinRefreshSeconds | int64 | quote }}
{{- end }}

{{- define "eventfold.config.kafka" -}}
KAFKA_BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | lower | quote }}
{{- if hasPrefix "sasl_" (lower .Values.kafka.securityProtocol) }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.saslMechanism | quote }}
{{- end }}
SCHEMA_REGISTRY_URL: {{ .Values.schemaRegistry.url | quote }}
KAFKA_INSECURE: {{ .Values.kafka.insecure | quote }}
SCHEMA_REGISTRY_INSECURE: {{ .Values.schemaRegistry.insecure | quote }}
{{- end }}

{{- define "eventfold.config.command-service" -}}
{{ include "eventfold.config.common" (dict "root" . "component" "command-service") }}
{{- end }}

{{- define "eventfold.config.outbox-relay" -}}
{{ include "eventfold.config.common" (dict "root" . "component" "outbox-relay") }}
{{ include "eventfold.config.kafka" . }}
KAFKA_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
KAFKA_TOPIC_PARTITIONS: {{ .Values.kafka.partitions | quote }}
KAFKA_TOPIC_REPLICATION: {{ .Values.kafka.replicationFactor | quote }}
KAFKA_TOPIC_RETENTION_MS: {{ .Values.kafka.retentionMs | int64 | quote }}
{{- with .Values.kafka.minInsyncReplicas }}
KAFKA_TOPIC_MIN_ISR: {{ . | int64 | quote }}
{{- end }}
RELAY_SHARDS: {{ .Values.relay.shards | quote }}
RELAY_BATCH_SIZE: {{ .Values.relay.batchSize | quote }}
RELAY_LEASE_MS: {{ .Values.relay.leaseMs | quote }}
{{- end }}

{{- define "eventfold.config.projector" -}}
{{ include "eventfold.config.common" (dict "root" . "component" "projector") }}
{{ include "eventfold.config.kafka" . }}
NEO4J_URI: {{ .Values.neo4j.uri | quote }}
NEO4J_INSECURE: {{ .Values.neo4j.insecure | quote }}
NEO4J_DATABASE: {{ .Values.neo4j.database | quote }}
PROJECTOR_APPLY_TIMEOUT_MS: {{ .Values.projector.applyTimeoutMs | int64 | quote }}
KAFKA_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
KAFKA_TOPIC_PARTITIONS: {{ .Values.kafka.partitions | quote }}
KAFKA_TOPIC_REPLICATION: {{ .Values.kafka.replicationFactor | quote }}
KAFKA_TOPIC_RETENTION_MS: {{ .Values.kafka.retentionMs | int64 | quote }}
{{- with .Values.kafka.minInsyncReplicas }}
KAFKA_TOPIC_MIN_ISR: {{ . | int64 | quote }}
{{- end }}
{{- end }}
