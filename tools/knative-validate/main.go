// Command knative-validate checks rendered manifests (the output of `kustomize build`) the way
// the cluster's admission would, offline:
//
//   - Knative Services, Brokers, Triggers and EventPolicies: decoded strictly into Knative's own
//     Go types (unknown fields are errors), then SetDefaults(ctx) and Validate(ctx) from
//     knative.dev/serving and knative.dev/eventing: the code the Knative webhooks run.
//   - Kubernetes core objects (ConfigMap, Secret, Job, ServiceAccount, RBAC, Namespace, ...):
//     decoded by client-go's scheme with apimachinery's strict deserializer: unknown or
//     duplicate fields and wrong types are errors, as `kubectl apply --validate=strict` reports.
//   - Redpanda Topics (cluster.redpanda.com/v1alpha2): the operator's Go API is not on the Go
//     module proxy, so a Topic is decoded strictly into the fields the operator documents, and
//     its partitions and replication factor are checked.
//
// Any other apiVersion/kind is an error: a typo in a kind must not pass unnoticed.
//
// Every ConfigMap, Secret and ServiceAccount a Knative Service's or Job's pod template refers
// to must be among the manifests (or named with -external): this catches the generated names
// kustomize did not rewrite inside a CRD.
//
// Usage: knative-validate [-external Kind/ns/name]... FILE... ("-" reads standard input).
// Prints one line per problem and exits 1 when there is any, else a summary and exits 0.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	eventingv1alpha1 "knative.dev/eventing/pkg/apis/eventing/v1alpha1"
	"knative.dev/eventing/pkg/apis/feature"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

// knativeObject is what every Knative resource implements.
type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// knativeKinds maps apiVersion/kind to a constructor of the Knative Go type.
var knativeKinds = map[string]func() knativeObject{
	"serving.knative.dev/v1/Service":  func() knativeObject { return &servingv1.Service{} },
	"eventing.knative.dev/v1/Broker":  func() knativeObject { return &eventingv1.Broker{} },
	"eventing.knative.dev/v1/Trigger": func() knativeObject { return &eventingv1.Trigger{} },
	"eventing.knative.dev/v1alpha1/EventPolicy": func() knativeObject {
		return &eventingv1alpha1.EventPolicy{}
	},
}

var strictCore = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// clusterFeatures mirrors the cluster docs/deploy.md sets up: Eventing's config-features at
// its defaults, plus authentication-oidc.
var clusterFeatures = map[string]string{feature.OIDCAuthentication: "enabled"}

func validationContext() context.Context {
	ctx := apis.WithinCreate(context.Background())
	flags, err := feature.NewFlagsConfigFromMap(clusterFeatures)
	if err != nil {
		panic(err) // a constant map: a programming error
	}
	return feature.ToContext(ctx, flags)
}

// validateKnative returns the webhook's errors; its warnings (for example "Kubernetes default
// value is insecure") are errors here too: the manifests must not draw any.
func validateKnative(doc []byte, obj knativeObject) error {
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	// Validate sees the defaulted object; references are taken from it too.
	ctx := validationContext()
	obj.SetDefaults(ctx)
	var problems []string
	if fieldErr := obj.Validate(ctx); fieldErr != nil {
		if e := fieldErr.Filter(apis.ErrorLevel); e != nil {
			problems = append(problems, e.Error())
		}
		if w := fieldErr.Filter(apis.WarningLevel); w != nil {
			problems = append(problems, "warning: "+w.Error())
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// validate returns the decoded object (nil when it is not a typed Kubernetes object) and the
// problems of one document.
func validate(h header, doc []byte) (runtime.Object, error) {
	key := h.APIVersion + "/" + h.Kind
	if h.APIVersion == "" || h.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	if h.Metadata.Name == "" {
		return nil, errors.New("metadata.name is required")
	}
	if build, ok := knativeKinds[key]; ok {
		obj := build()
		err := validateKnative(doc, obj)
		typed, _ := obj.(runtime.Object)
		return typed, err
	}
	if key == topicAPIVersion+"/Topic" {
		return nil, validateTopic(doc)
	}
	obj, _, err := strictCore.Decode(doc, nil, nil)
	return obj, err
}

// splitDocuments returns the non-empty YAML documents of a stream.
func splitDocuments(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func open(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

func run(names []string, external map[string]bool, stdout, stderr io.Writer) int {
	problems := 0
	counts := map[string]int{}
	present := map[string]bool{}
	var refs []reference
	for _, name := range names {
		file, err := open(name)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			problems++
			continue
		}
		docs, err := splitDocuments(file)
		file.Close()
		if err != nil {
			fmt.Fprintf(stderr, "%s: not YAML: %v\n", name, err)
			problems++
			continue
		}
		for i, doc := range docs {
			var h header
			if err := yaml.Unmarshal(doc, &h); err != nil {
				fmt.Fprintf(stderr, "%s: document %d: not a Kubernetes object: %v\n", name, i+1, err)
				problems++
				continue
			}
			counts[h.Kind]++
			present[fmt.Sprintf("%s/%s/%s", h.Kind, h.Metadata.Namespace, h.Metadata.Name)] = true
			where := h.Metadata.Name
			if h.Metadata.Namespace != "" {
				where = h.Metadata.Namespace + "/" + where
			}
			obj, err := validate(h, doc)
			refs = append(refs, references(obj, fmt.Sprintf("%s: %s %s", name, h.Kind, where))...)
			if err != nil {
				message := strings.ReplaceAll(err.Error(), "\n", "; ")
				fmt.Fprintf(stderr, "%s: %s %s: %s\n", name, h.Kind, where, message)
				problems++
			}
		}
	}
	for _, problem := range dangling(refs, present, external) {
		fmt.Fprintln(stderr, problem)
		problems++
	}
	if problems > 0 {
		fmt.Fprintf(stderr, "knative-validate: %d problem(s)\n", problems)
		return 1
	}
	kinds := make([]string, 0, len(counts))
	for kind, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", kind, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(stdout, "knative-validate: ok (%s)\n", strings.Join(kinds, " "))
	return 0
}

// externals collects -external Kind/namespace/name: objects the manifests refer to but
// another process creates (for example a Secret from the platform's secret manager).
type externals map[string]bool

func (e externals) String() string { return fmt.Sprint(map[string]bool(e)) }

func (e externals) Set(value string) error {
	if strings.Count(value, "/") != 2 {
		return fmt.Errorf("want Kind/namespace/name, got %q", value)
	}
	e[value] = true
	return nil
}

func main() {
	external := externals{}
	flag.Var(external, "external", "Kind/namespace/name created outside these manifests (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: knative-validate [-external Kind/ns/name]... FILE... (- for standard input)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(flag.Args(), external, os.Stdout, os.Stderr))
}
