{{/*
Rules the values schema cannot express (it cannot compare two values), checked at render time so
`helm install`/`template` fails with a message naming the value. Included at the top of every template, so the first one Helm renders fails with the message.
*/}}
{{- define "eventfold.validate" -}}
{{- $v := .Values }}
{{- $partitions := $v.kafka.partitions | int }}
{{- $names := list }}
{{- range $rm := $v.projector.readModels }}
{{- if has $rm.name $names }}
{{- fail (printf "projector.readModels: read model %q is listed twice (names must be unique)" $rm.name) }}
{{- end }}
{{- $names = append $names $rm.name }}
{{- $as := include "eventfold.readModelAutoscaling" (dict "root" $ "rm" $rm) | fromYaml }}
{{- if $as.enabled }}
{{- if gt ($as.maxReplicas | int) $partitions }}
{{- fail (printf "projector read model %q: autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d); a consumer beyond the partition count gets no partition. Lower maxReplicas or raise kafka.partitions." $rm.name ($as.maxReplicas | int) $partitions) }}
{{- end }}
{{- if gt ($as.minReplicas | int) ($as.maxReplicas | int) }}
{{- fail (printf "projector read model %q: autoscaling.minReplicas (%d) exceeds autoscaling.maxReplicas (%d)" $rm.name ($as.minReplicas | int) ($as.maxReplicas | int)) }}
{{- end }}
{{- if and (ne $as.metric "external") (not (dig "requests" "cpu" "" ($rm.resources | default $v.projector.resources))) }}
{{- fail (printf "projector read model %q: CPU autoscaling needs resources.requests.cpu" $rm.name) }}
{{- end }}
{{- else if gt (ternary $rm.replicas 1 (hasKey $rm "replicas") | int) $partitions }}
{{- fail (printf "projector read model %q: replicas (%d) exceeds kafka.partitions (%d)" $rm.name ($rm.replicas | int) $partitions) }}
{{- end }}
{{- end }}
{{- with $v.commandService.autoscaling }}
{{- if and .enabled (gt (.minReplicas | int) (.maxReplicas | int)) }}
{{- fail (printf "commandService.autoscaling: minReplicas (%d) exceeds maxReplicas (%d)" (.minReplicas | int) (.maxReplicas | int)) }}
{{- end }}
{{- if and .enabled (not (dig "requests" "cpu" "" $v.commandService.resources)) }}
{{- fail "commandService.autoscaling needs commandService.resources.requests.cpu" }}
{{- end }}
{{- end }}
{{- /* Every user reference names an entry that exists. */}}
{{- $pgRefs := dict "commandService.databaseUser" $v.commandService.databaseUser "relay.databaseUser" $v.relay.databaseUser "projector.databaseUser" $v.projector.databaseUser }}
{{- if $v.migrations.enabled }}{{ $_ := set $pgRefs "migrations.databaseUser" $v.migrations.databaseUser }}{{ end }}
{{- $kafkaRefs := dict "relay.kafkaUser" $v.relay.kafkaUser "projector.kafkaUser" $v.projector.kafkaUser }}
{{- range $v.projector.readModels }}
{{- with .databaseUser }}{{ $_ := set $pgRefs "projector.readModels[].databaseUser" . }}{{ end }}
{{- with .kafkaUser }}{{ $_ := set $kafkaRefs "projector.readModels[].kafkaUser" . }}{{ end }}
{{- end }}
{{- range $where, $ref := $pgRefs }}
{{- if not (hasKey $v.postgresql.users $ref) }}
{{- fail (printf "%s: %q is not a key of postgresql.users (%s)" $where $ref (keys $v.postgresql.users | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- if hasPrefix "sasl_" (lower $v.kafka.securityProtocol) }}
{{- range $where, $ref := $kafkaRefs }}
{{- if not (hasKey $v.kafka.users $ref) }}
{{- fail (printf "%s: %q is not a key of kafka.users (%s)" $where $ref (keys $v.kafka.users | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $ref, $cred := $v.postgresql.users }}
{{- if and $cred.urlKey (include "eventfold.credManaged" (dict "root" $ "cred" $cred)) }}
{{- fail (printf "postgresql.users.%s.urlKey is set but no existingSecret holds it (set postgresql.users.%s.existingSecret or existingSecret)" $ref $ref) }}
{{- end }}
{{- end }}
{{- end }}
