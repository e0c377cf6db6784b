{{/*
Rules the values schema cannot express (it cannot compare two values), checked at render time so
`helm install`/`template` fails with a message naming the value. Included at the top of every template, so the first one Helm renders fails with the message.
*/}}
{{- define "eventfold.validate" -}}
{{- $v := .Values }}
{{- include "eventfold.validateAuth" . }}
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
{{- range $i, $rm := $v.projector.readModels }}
{{- with $rm.databaseUser }}{{ $_ := set $pgRefs (printf "projector.readModels[%d].databaseUser" $i) . }}{{ end }}
{{- with $rm.kafkaUser }}{{ $_ := set $kafkaRefs (printf "projector.readModels[%d].kafkaUser" $i) . }}{{ end }}
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
{{- /* No default passwords: a credential in use comes from an existing Secret or has a password set. */}}
{{- $used := dict }}
{{- range $pgRefs }}{{ $_ := set $used (printf "postgresql.users.%s" .) (index $v.postgresql.users .) }}{{ end }}
{{- if hasPrefix "sasl_" (lower $v.kafka.securityProtocol) }}
{{- range $kafkaRefs }}{{ $_ := set $used (printf "kafka.users.%s" .) (index $v.kafka.users .) }}{{ end }}
{{- end }}
{{- if $v.schemaRegistry.auth.enabled }}{{ $_ := set $used "schemaRegistry.auth" $v.schemaRegistry.auth }}{{ end }}
{{- if and $v.schemas.enabled $v.schemas.auth.enabled }}{{ $_ := set $used "schemas.auth" $v.schemas.auth }}{{ end }}
{{- if $v.projector.readModels }}{{ $_ := set $used "neo4j.auth" $v.neo4j.auth }}{{ end }}
{{- range $where, $cred := $used }}
{{- if and (include "eventfold.credManaged" (dict "root" $ "cred" $cred)) (not $cred.password) }}
{{- fail (printf "%s has no password and no Secret: set existingSecret (or %s.existingSecret) to a Secret holding it, or %s.password for a development install (the chart has no default passwords)" $where $where $where) }}
{{- end }}
{{- end }}
{{- include "eventfold.validateProduction" . }}
{{- end }}

{{/*
Authentication: the chart never renders services that accept requests without a token, and a jwt
configuration must be complete (issuer, audience, exactly one JWKS source).
*/}}
{{- define "eventfold.validateAuth" -}}
{{- $a := .Values.auth }}
{{- if ne $a.mode "jwt" }}
{{- fail (printf "auth.mode %q is refused: every service, its admin API included, would accept requests without a token. Use auth.mode jwt with auth.issuer, auth.audience and one JWKS source (auth.jwksUrl, auth.jwks.inline or auth.jwks.existingConfigMap)." $a.mode) }}
{{- end }}
{{- if not $a.issuer }}
{{- fail "auth.issuer is required with auth.mode jwt: the iss claim every token must carry" }}
{{- end }}
{{- if not $a.audience }}
{{- fail "auth.audience is required with auth.mode jwt: the aud claim every token must carry" }}
{{- end }}
{{- $sources := list }}
{{- if $a.jwksUrl }}{{ $sources = append $sources "auth.jwksUrl" }}{{ end }}
{{- if $a.jwks.inline }}{{ $sources = append $sources "auth.jwks.inline" }}{{ end }}
{{- if $a.jwks.existingConfigMap }}{{ $sources = append $sources "auth.jwks.existingConfigMap" }}{{ end }}
{{- if ne (len $sources) 1 }}
{{- fail (printf "auth: exactly one JWKS source is required (auth.jwksUrl, auth.jwks.inline or auth.jwks.existingConfigMap), found %d%s" (len $sources) (ternary "" (printf ": %s" (join ", " $sources)) (eq (len $sources) 0))) }}
{{- end }}
{{- if $a.jwks.inline }}
{{- $doc := $a.jwks.inline | fromJson }}
{{- if or (hasKey $doc "Error") (not (kindIs "slice" $doc.keys)) }}
{{- fail "auth.jwks.inline must be a JWKS document: a JSON object with a \"keys\" list" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
profile production: every connection uses TLS that verifies the server, unless the section says
`insecure: true` (auth.jwksUrl has no such escape: serve the JWKS over https or give it as a file).
*/}}
{{- define "eventfold.validateProduction" -}}
{{- $v := .Values }}
{{- if eq $v.profile "production" }}
{{- $proto := lower $v.kafka.securityProtocol }}
{{- if and (not (has $proto (list "ssl" "sasl_ssl"))) (not $v.kafka.insecure) }}
{{- fail (printf "profile production: kafka.securityProtocol %q does not encrypt the traffic to the brokers; use ssl or sasl_ssl, or set kafka.insecure: true to accept it" $v.kafka.securityProtocol) }}
{{- end }}
{{- if and (ne $v.postgresql.sslMode "verify-full") (not $v.postgresql.insecure) }}
{{- fail (printf "profile production: postgresql.sslMode %q does not verify the server's certificate and host name; use verify-full, or set postgresql.insecure: true to accept it" $v.postgresql.sslMode) }}
{{- end }}
{{- if and (not (hasPrefix "https://" (lower $v.schemaRegistry.url))) (not $v.schemaRegistry.insecure) }}
{{- fail (printf "profile production: schemaRegistry.url %q is not https://; use https, or set schemaRegistry.insecure: true to accept it" $v.schemaRegistry.url) }}
{{- end }}
{{- $scheme := lower (first (splitList "://" $v.neo4j.uri)) }}
{{- if and $v.projector.readModels (not (has $scheme (list "bolt+s" "neo4j+s"))) (not $v.neo4j.insecure) }}
{{- fail (printf "profile production: neo4j.uri %q has no verified TLS; use bolt+s:// or neo4j+s://, or set neo4j.insecure: true to accept it" $v.neo4j.uri) }}
{{- end }}
{{- if and $v.auth.jwksUrl (not (hasPrefix "https://" (lower $v.auth.jwksUrl))) }}
{{- fail (printf "profile production: auth.jwksUrl %q is not https://: whoever can change the keys in transit can sign tokens; serve it over https or give the JWKS as a file (auth.jwks)" $v.auth.jwksUrl) }}
{{- end }}
{{- end }}
{{- end }}
