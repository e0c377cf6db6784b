{{/*
Non-secret settings of each component, as ConfigMap data (the same text feeds the pods' checksum
annotation, so a change rolls the pods). Credentials are never here: they come from Secrets as env.
*/}}

{{- define "eventfold.config.common" -}}
HTTP_ADDR: "0.0.0.0:8080"
LOG_FORMAT: {{ .Values.log.format | quote }}
RUST_LOG: {{ .Values.log.level | quote }}
{{- end }}

{{- define "eventfold.config.kafka" -}}
KAFKA_BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | lower | quote }}
{{- if hasPrefix "sasl_" (lower .Values.kafka.securityProtocol) }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.saslMechanism | quote }}
{{- end }}
SCHEMA_REGISTRY_URL: {{ .Values.schemaRegistry.url | quote }}
{{- end }}

{{- define "eventfold.config.command-service" -}}
{{ include "eventfold.config.common" . }}
{{- end }}

{{- define "eventfold.config.outbox-relay" -}}
{{ include "eventfold.config.common" . }}
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
{{ include "eventfold.config.common" . }}
{{ include "eventfold.config.kafka" . }}
NEO4J_URI: {{ .Values.neo4j.uri | quote }}
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
