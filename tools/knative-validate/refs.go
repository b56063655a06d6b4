package main

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// reference is a ConfigMap, Secret or ServiceAccount a pod template needs: "Kind/ns/name".
type reference struct {
	target string
	from   string
}

// references lists what a decoded object's pod template refers to. kustomize renames
// generated ConfigMaps and Secrets (hash suffix) but, unless told, not inside CRDs such as a
// Knative Service: such a dangling name shows up here.
func references(obj runtime.Object, from string) []reference {
	var spec *corev1.PodSpec
	var namespace string
	switch o := obj.(type) {
	case *servingv1.Service:
		spec, namespace = &o.Spec.Template.Spec.PodSpec, o.Namespace
	case *batchv1.Job:
		spec, namespace = &o.Spec.Template.Spec, o.Namespace
	case *appsv1.Deployment:
		spec, namespace = &o.Spec.Template.Spec, o.Namespace
	default:
		return nil
	}
	var refs []reference
	add := func(kind, name string, optional *bool) {
		if name != "" && (optional == nil || !*optional) {
			refs = append(refs, reference{fmt.Sprintf("%s/%s/%s", kind, namespace, name), from})
		}
	}
	add("ServiceAccount", spec.ServiceAccountName, nil)
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				add("ConfigMap", e.ConfigMapRef.Name, e.ConfigMapRef.Optional)
			}
			if e.SecretRef != nil {
				add("Secret", e.SecretRef.Name, e.SecretRef.Optional)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add("ConfigMap", r.Name, r.Optional)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add("Secret", r.Name, r.Optional)
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			add("ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional)
		}
		if v.Secret != nil {
			add("Secret", v.Secret.SecretName, v.Secret.Optional)
		}
	}
	return refs
}

// dangling returns the references to objects neither rendered nor declared external.
func dangling(refs []reference, present map[string]bool, external map[string]bool) []string {
	var problems []string
	seen := map[reference]bool{}
	for _, r := range refs {
		if present[r.target] || external[r.target] || seen[r] {
			continue
		}
		seen[r] = true
		if strings.HasPrefix(r.target, "ServiceAccount/") && strings.HasSuffix(r.target, "/default") {
			continue
		}
		problems = append(problems, fmt.Sprintf("%s: refers to %s, which is neither in the manifests "+
			"nor declared with -external", r.from, r.target))
	}
	sort.Strings(problems)
	return problems
}
