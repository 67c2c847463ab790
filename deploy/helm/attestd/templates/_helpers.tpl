{{- define "attestd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "attestd.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "attestd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "attestd.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* replicated: stateless replicas on external engines. */}}
{{- define "attestd.replicated" -}}
{{- if gt (int .Values.replicaCount) 1 -}}true{{- end -}}
{{- end -}}

{{/* check stops the render on a configuration attestd would refuse. */}}
{{- define "attestd.check" -}}
{{- if include "attestd.replicated" . -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "replicaCount >= 2 needs database.existingSecret (PostgreSQL): replicas share the index and the job queue" -}}
{{- end -}}
{{- if not .Values.registries -}}
{{- fail "replicaCount >= 2 needs registries (external registries): the embedded registry is single-replica" -}}
{{- end -}}
{{- if not .Values.keys -}}
{{- fail "replicaCount >= 2 needs keys (a KMS or Vault key): the generated local key is single-replica" -}}
{{- end -}}
{{- if or (not .Values.auditLog.databaseSecret) (not .Values.auditLog.keySecret) -}}
{{- fail "replicaCount >= 2 needs auditLog.databaseSecret and auditLog.keySecret: replicas share one audit log" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* podSecurity: the restricted Pod Security Standard. */}}
{{- define "attestd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "attestd.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* env: settings from Secrets and the shape, shared by serve and worker. */}}
{{- define "attestd.env" -}}
- name: ATTESTD_CONFIG
  value: /etc/attestd/config/config.yaml
- name: ATTESTD_DATA_DIR
  value: /var/lib/attestd
{{- if .Values.database.existingSecret }}
- name: ATTESTD_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.existingSecret | quote }}, key: {{ .Values.database.key | quote }}}
{{- end }}
{{- if .Values.auditLog.databaseSecret }}
- name: ATTESTD_LOG_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.auditLog.databaseSecret | quote }}, key: {{ .Values.auditLog.databaseKey | quote }}}
{{- end }}
{{- if .Values.auditLog.keySecret }}
- name: ATTESTD_LOG_KEY_FILE
  value: /etc/attestd/log-key/log.key
{{- end }}
{{- if .Values.keyPasswordSecret }}
- name: ATTESTD_KEY_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.keyPasswordSecret | quote }}, key: password}
{{- end }}
{{- if .Values.dockerConfigSecret }}
- name: ATTESTD_DOCKER_CONFIG
  value: /etc/attestd/docker/config.json
{{- end }}
{{- range $i, $r := .Values.registries }}
{{- if $r.passwordSecret }}
- name: {{ printf "ATTESTD_REGISTRY_%d_PASSWORD" $i }}
  valueFrom:
    secretKeyRef: {name: {{ $r.passwordSecret.name | quote }}, key: {{ $r.passwordSecret.key | quote }}}
{{- end }}
{{- if $r.tokenSecret }}
- name: {{ printf "ATTESTD_REGISTRY_%d_TOKEN" $i }}
  valueFrom:
    secretKeyRef: {name: {{ $r.tokenSecret.name | quote }}, key: {{ $r.tokenSecret.key | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{- define "attestd.envFrom" -}}
{{- if .Values.kmsEnvSecret }}
envFrom:
  - secretRef: {name: {{ .Values.kmsEnvSecret | quote }}}
{{- end }}
{{- end -}}

{{/* volumes shared by serve and worker (the data volume apart). */}}
{{- define "attestd.volumes" -}}
- name: config
  configMap: {name: {{ include "attestd.fullname" . }}}
- name: tmp
  emptyDir: {}
{{- if .Values.auditLog.keySecret }}
- name: log-key
  secret: {secretName: {{ .Values.auditLog.keySecret | quote }}, defaultMode: 0400}
{{- end }}
{{- if .Values.dockerConfigSecret }}
- name: docker-config
  secret:
    secretName: {{ .Values.dockerConfigSecret | quote }}
    defaultMode: 0400
    items: [{key: .dockerconfigjson, path: config.json}]
{{- end }}
{{- range $i, $p := .Values.policies }}
- name: {{ printf "policies-%d" $i }}
  configMap: {name: {{ $p.configMap | quote }}}
{{- end }}
{{- end -}}

{{- define "attestd.volumeMounts" -}}
- {name: config, mountPath: /etc/attestd/config, readOnly: true}
- {name: tmp, mountPath: /tmp}
- {name: data, mountPath: /var/lib/attestd}
{{- if .Values.auditLog.keySecret }}
- {name: log-key, mountPath: /etc/attestd/log-key, readOnly: true}
{{- end }}
{{- if .Values.dockerConfigSecret }}
- {name: docker-config, mountPath: /etc/attestd/docker, readOnly: true}
{{- end }}
{{- range $i, $p := .Values.policies }}
- {name: {{ printf "policies-%d" $i }}, mountPath: {{ printf "/etc/attestd/policies/%d" $i }}, readOnly: true}
{{- end }}
{{- end -}}
