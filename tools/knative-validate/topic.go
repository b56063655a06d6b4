package main

import (
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"
)

const topicAPIVersion = "cluster.redpanda.com/v1alpha2"

// topic holds the fields of the Redpanda operator's Topic resource (v1alpha2) as its
// documentation describes them. The operator's Go API is not published on the Go module
// proxy, so this is the one kind checked against a local struct; strict decoding still rejects
// any field the operator does not know.
type topic struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       topicSpec      `json:"spec"`
}

type topicSpec struct {
	Cluster            *topicCluster      `json:"cluster,omitempty"`
	KafkaAPISpec       map[string]any     `json:"kafkaApiSpec,omitempty"`
	Partitions         *int               `json:"partitions,omitempty"`
	ReplicationFactor  *int               `json:"replicationFactor,omitempty"`
	AdditionalConfig   map[string]*string `json:"additionalConfig,omitempty"`
	OverwriteTopicName *string            `json:"overwriteTopicName,omitempty"`
	MetricsNamespace   *string            `json:"metricsNamespace,omitempty"`
	Interval           *string            `json:"interval,omitempty"`
}

type topicCluster struct {
	ClusterRef *struct {
		Name string `json:"name"`
	} `json:"clusterRef,omitempty"`
	StaticConfiguration map[string]any `json:"staticConfiguration,omitempty"`
}

func validateTopic(doc []byte) error {
	var t topic
	if err := yaml.UnmarshalStrict(doc, &t); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	var errs []error
	s := t.Spec
	if s.Cluster == nil && s.KafkaAPISpec == nil {
		errs = append(errs, errors.New("spec.cluster (clusterRef) or spec.kafkaApiSpec is required"))
	}
	if s.Cluster != nil && s.Cluster.ClusterRef != nil && s.Cluster.ClusterRef.Name == "" {
		errs = append(errs, errors.New("spec.cluster.clusterRef.name is required"))
	}
	if s.Partitions == nil || *s.Partitions < 1 {
		errs = append(errs, errors.New("spec.partitions must be at least 1"))
	}
	if s.ReplicationFactor == nil || *s.ReplicationFactor < 1 || *s.ReplicationFactor%2 == 0 {
		errs = append(errs, errors.New("spec.replicationFactor must be a positive odd number (Raft)"))
	}
	for name, value := range s.AdditionalConfig {
		if value == nil {
			errs = append(errs, fmt.Errorf("spec.additionalConfig[%s] has no value", name))
		}
	}
	return errors.Join(errs...)
}
