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
// Usage: knative-validate FILE... ("-" reads standard input). Prints one line per problem and
// exits 1 when there is any, else prints a summary and exits 0.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

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
	"serving.knative.dev/v1/Service":         func() knativeObject { return &servingv1.Service{} },
	"eventing.knative.dev/v1/Broker":         func() knativeObject { return &eventingv1.Broker{} },
	"eventing.knative.dev/v1/Trigger":        func() knativeObject { return &eventingv1.Trigger{} },
	"eventing.knative.dev/v1alpha1/EventPolicy": func() knativeObject {
		return &eventingv1alpha1.EventPolicy{}
	},
}

var strictCore = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// validationContext mirrors the cluster this project documents (docs/deploy.md): Eventing's
// authentication-oidc feature enabled, everything else at Knative's defaults.
func validationContext() context.Context {
	ctx := apis.WithinCreate(context.Background())
	return feature.ToContext(ctx, feature.Flags{feature.OIDCAuthentication: feature.Enabled})
}

func validateKnative(doc []byte, obj knativeObject) error {
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	ctx := validationContext()
	obj.SetDefaults(ctx)
	if fieldErr := obj.Validate(ctx); fieldErr != nil {
		return errors.New(strings.ReplaceAll(fieldErr.Error(), "\n", "; "))
	}
	return nil
}

func validateCore(doc []byte) error {
	_, _, err := strictCore.Decode(doc, nil, nil)
	return err
}

// validate returns the problems of one document.
func validate(h header, doc []byte) error {
	key := h.APIVersion + "/" + h.Kind
	if h.APIVersion == "" || h.Kind == "" {
		return errors.New("apiVersion and kind are required")
	}
	if h.Metadata.Name == "" {
		return errors.New("metadata.name is required")
	}
	if build, ok := knativeKinds[key]; ok {
		return validateKnative(doc, build())
	}
	if key == topicAPIVersion+"/Topic" {
		return validateTopic(doc)
	}
	return validateCore(doc)
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

func run(names []string, stdout, stderr io.Writer) int {
	problems := 0
	counts := map[string]int{}
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
			if err := validate(h, doc); err != nil {
				where := h.Metadata.Name
				if h.Metadata.Namespace != "" {
					where = h.Metadata.Namespace + "/" + where
				}
				fmt.Fprintf(stderr, "%s: %s %s: %v\n", name, h.Kind, where, err)
				problems++
			}
		}
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

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: knative-validate FILE... (- for standard input)")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
