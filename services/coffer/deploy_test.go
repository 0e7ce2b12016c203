package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeployFiles checks docker-compose.yml and deploy/Dockerfile where no
// Docker engine can: the compose file parses, every service is built from
// a Dockerfile target that exists, every file the Dockerfile copies exists,
// and every COFFER_ variable the compose file sets is one the code reads.
func TestDeployFiles(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
				Target     string `yaml:"target"`
			} `yaml:"build"`
			Image       string         `yaml:"image"`
			Environment map[string]any `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	docker, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^FROM \S+ AS (\S+)$`).FindAllStringSubmatch(string(docker), -1) {
		targets[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+\.(?:mod|sum|work)) `).FindAllStringSubmatch(string(docker), -1) {
		if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
			t.Errorf("Dockerfile copies %s, which does not exist", m[1])
		}
	}

	services := []string{"discovery", "scheduler", "backup-streamer", "committer", "autoprotect", "gateway"}
	for _, s := range services {
		if _, err := os.Stat(filepath.Join(root, "services", s, "cmd", s, "main.go")); err != nil {
			t.Errorf("service %s has no binary at services/%s/cmd/%s", s, s, s)
		}
		c, ok := compose.Services[s]
		if !ok {
			t.Errorf("docker-compose.yml has no service %s", s)
			continue
		}
		if c.Build == nil || c.Build.Dockerfile != "deploy/Dockerfile" || !targets[c.Build.Target] || c.Build.Target != s {
			t.Errorf("compose service %s is not built from deploy/Dockerfile target %s", s, s)
		}
	}
	for _, s := range []string{"nats", "minio", "mssql", "jaeger"} {
		if c, ok := compose.Services[s]; !ok || c.Image == "" {
			t.Errorf("docker-compose.yml has no %s image", s)
		}
	}

	// every COFFER_ variable the compose file sets is read somewhere
	known := map[string]bool{}
	re := regexp.MustCompile(`"(COFFER_[A-Z0-9_]+)"`)
	for _, dir := range []string{filepath.Join(root, "services"), filepath.Join(root, "pkg", "daemon")} {
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, _ := os.ReadFile(p)
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				known[m[1]] = true
			}
			return nil
		})
	}
	var unknown []string
	for name, c := range compose.Services {
		for k := range c.Environment {
			if strings.HasPrefix(k, "COFFER_") && !known[k] {
				unknown = append(unknown, name+": "+k)
			}
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("docker-compose.yml sets variables no code reads: %v", unknown)
	}
}
