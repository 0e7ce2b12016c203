module github.com/cofferhq/coffer/scripts/k8s-schemas

go 1.26.0

require go.yaml.in/yaml/v3 v3.0.4
