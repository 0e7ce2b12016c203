package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeployFiles checks docker-compose.yml and deploy/Dockerfile where no
// Docker engine can: the compose file parses, every service is built from
// a Dockerfile target that exists, every file the Dockerfile copies exists,
// every COFFER_ variable the compose file sets is one the code reads (the
// conformance suite's COFFER_TEST_ ones, its tests), and the conformance
// profile runs make test-mssql against SQL Server 2019 and 2022 without
// starting on a plain `docker compose up`.
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
			Profiles    []string       `yaml:"profiles"`
			Command     any            `yaml:"command"`
			Volumes     []string       `yaml:"volumes"`
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
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			test := strings.HasSuffix(p, "_test.go")
			b, _ := os.ReadFile(p)
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				// tests read only the conformance suite's variables
				if !test || strings.HasPrefix(m[1], "COFFER_TEST_") {
					known[m[1]] = true
				}
			}
			return nil
		})
	}
	// the conformance profile
	for name, image := range map[string]string{
		"mssql-2019": "mcr.microsoft.com/mssql/server:2019-latest",
		"mssql-2022": "mcr.microsoft.com/mssql/server:2022-latest",
	} {
		c, ok := compose.Services[name]
		switch {
		case !ok:
			t.Errorf("docker-compose.yml has no service %s", name)
		case c.Image != image:
			t.Errorf("compose service %s: image %q, want %q", name, c.Image, image)
		case c.Environment["ACCEPT_EULA"] != "Y" || c.Environment["MSSQL_SA_PASSWORD"] == nil:
			t.Errorf("compose service %s: environment %v, want ACCEPT_EULA=Y and MSSQL_SA_PASSWORD", name, c.Environment)
		case !slices.Contains(c.Volumes, "conformance-staging:/var/opt/mssql/coffer-staging"):
			t.Errorf("compose service %s: volumes %v, want the shared staging directory", name, c.Volumes)
		}
	}
	conf, ok := compose.Services["conformance"]
	if !ok {
		t.Fatal("docker-compose.yml has no conformance service")
	}
	cmd := fmt.Sprint(conf.Command)
	for _, want := range []string{"make test-mssql", "COFFER_TEST_MSSQL_DSN=", "COFFER_TEST_MSSQL_DSN2=", "@mssql-2019:1433", "@mssql-2022:1433"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("the conformance service's command %q does not contain %q", cmd, want)
		}
	}
	if s := conf.Environment["COFFER_TEST_MSSQL_SERVER_STAGING"]; s != "/var/opt/mssql/coffer-staging" {
		t.Errorf("conformance: COFFER_TEST_MSSQL_SERVER_STAGING %v, want where the servers mount the staging volume", s)
	}
	if s, _ := conf.Environment["COFFER_TEST_MSSQL_STAGING"].(string); s == "" || !slices.Contains(conf.Volumes, "conformance-staging:"+s) {
		t.Errorf("conformance: COFFER_TEST_MSSQL_STAGING %q is not where it mounts the staging volume (%v)", s, conf.Volumes)
	}
	for _, name := range []string{"mssql-2019", "mssql-2022", "conformance"} {
		if p := compose.Services[name].Profiles; !slices.Equal(p, []string{"conformance"}) {
			t.Errorf("compose service %s: profiles %v, want [conformance]: it would start with a plain docker compose up", name, p)
		}
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^test-mssql:`).Match(makefile) {
		t.Error("the Makefile has no test-mssql target")
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
