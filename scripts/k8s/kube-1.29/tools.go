//go:build tools

// Package tools pins the API server of the oldest Kubernetes minor the chart claims, for
// scripts/k8s/test.sh's server-side dry-run.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
