package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cofferhq/coffer/pkg/daemon"
	"github.com/cofferhq/coffer/pkg/natsauth"
)

// TestDeployFiles checks docker-compose.yml and deploy/Dockerfile where no
// Docker engine can: the compose file parses, every service `coffer up`
// declares has a binary and is built from a Dockerfile target that
// exists, gets the master key only if it needs it, every file the
// Dockerfile copies exists, every COFFER_ variable the compose file sets
// is one the code reads (the conformance suite's COFFER_TEST_ ones, its
// tests), and the conformance profile runs make test-mssql against SQL
// Server 2019 and 2022 without starting on a plain `docker compose up`.
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
			Secrets     []any          `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
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

	services := serviceNames()
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
		if _, got := c.Environment["COFFER_MASTER_KEY"]; got != needsMasterKey(t, s) {
			t.Errorf("compose service %s: given the master key %v; want %v", s, got, !got)
		}
	}
	// each service logs in to NATS as its own user: its own seed, as
	// `coffer nats config` names it, mounted where COFFER_NATS_NKEY_FILE
	// says, and no other service's; the CA where COFFER_NATS_CA_FILE says
	for _, s := range services {
		c := compose.Services[s]
		files := map[string]string{} // path in the container -> file on the host
		for _, sec := range c.Secrets {
			source, target := "", ""
			switch sec := sec.(type) {
			case string:
				source, target = sec, sec
			case map[string]any:
				source, _ = sec["source"].(string)
				target, _ = sec["target"].(string)
				if target == "" {
					target = source
				}
			}
			if !strings.HasPrefix(target, "/") {
				target = "/run/secrets/" + target
			}
			files[target] = compose.Secrets[source].File
		}
		seed := natsauth.SeedFile(s)
		key, _ := c.Environment["COFFER_NATS_NKEY_FILE"].(string)
		if f := files[key]; key == "" || filepath.Base(f) != seed {
			t.Errorf("compose service %s: COFFER_NATS_NKEY_FILE %q is %q on the host; want its own seed, %s", s, key, f, seed)
		}
		for target, f := range files {
			if strings.HasSuffix(f, ".nk") && filepath.Base(f) != seed {
				t.Errorf("compose service %s mounts another service's seed, %s, at %s", s, f, target)
			}
		}
		ca, _ := c.Environment["COFFER_NATS_CA_FILE"].(string)
		if f := files[ca]; ca == "" || filepath.Base(f) != "ca.pem" {
			t.Errorf("compose service %s: COFFER_NATS_CA_FILE %q is %q on the host; want the NATS CA, ca.pem", s, ca, f)
		}
		if u, _ := c.Environment["COFFER_NATS_URL"].(string); !strings.HasPrefix(u, "tls://") {
			t.Errorf("compose service %s: COFFER_NATS_URL %q; want tls://", s, u)
		}
	}
	// nats gets the users (public keys), never a seed
	if nats := compose.Services["nats"]; !slices.ContainsFunc(nats.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/etc/nats/coffer/coffer-nats.conf:ro") }) ||
		slices.ContainsFunc(nats.Volumes, func(v string) bool { return strings.Contains(v, ".nk:") }) {
		t.Errorf("compose service nats: volumes %v; want coffer's users config and no seed", nats.Volumes)
	}
	for name, sec := range compose.Secrets {
		if sec.File == "" {
			t.Errorf("compose secret %s: want a file on the host", name)
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
		"mssql-2019": "mcr.microsoft.com/mssql/server:2019-CU",
		"mssql-2022": "mcr.microsoft.com/mssql/server:2022-CU",
	} {
		c, ok := compose.Services[name]
		switch {
		case !ok:
			t.Errorf("docker-compose.yml has no service %s", name)
		case !strings.HasPrefix(c.Image, image):
			// pinned to a cumulative update, never a moving tag
			t.Errorf("compose service %s: image %q, want %s…", name, c.Image, image)
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

// TestDeployURLMode checks the compose file's URL mode wiring: every
// streamer listens on an address of its own, with a certificate from the
// CA that ca-init creates, as the streamer's user, before SQL Server and
// the streamers start, and whose certificate the mssql container finds
// where SQL Server on Linux reads trusted CAs.
func TestDeployURLMode(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Hostname    string         `yaml:"hostname"`
		User        string         `yaml:"user"`
		Environment map[string]any `yaml:"environment"`
		Command     []string       `yaml:"command"`
		Volumes     []string       `yaml:"volumes"`
		DependsOn   any            `yaml:"depends_on"`
		Expose      []string       `yaml:"expose"`
	}
	var compose struct {
		Services map[string]service `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	streamer, mssql, caInit := compose.Services["backup-streamer"], compose.Services["mssql"], compose.Services["ca-init"]

	// mount is the volume a service mounts at dir, "" if none
	mount := func(s service, dir string) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == dir {
				return parts[0]
			}
		}
		return ""
	}
	// after is the condition on which s waits for dep, "" if it does not
	after := func(s service, dep string) string {
		switch d := s.DependsOn.(type) {
		case []any:
			if slices.Contains(d, any(dep)) {
				return "service_started"
			}
		case map[string]any:
			if c, ok := d[dep].(map[string]any); ok {
				cond, _ := c["condition"].(string)
				return cond
			}
		}
		return ""
	}

	listen, _ := streamer.Environment["COFFER_URL_LISTEN"].(string)
	host, port, _ := strings.Cut(listen, ":")
	if host == "" || host != streamer.Hostname {
		t.Errorf("backup-streamer: COFFER_URL_LISTEN %q, hostname %q; want it to listen on its own hostname, each replica's own address", listen, streamer.Hostname)
	}
	if !slices.Contains(streamer.Expose, port) {
		t.Errorf("backup-streamer: expose %v; want the listening port %q", streamer.Expose, port)
	}
	if _, ok := streamer.Environment["COFFER_URL_ADVERTISE"]; !ok {
		t.Error("backup-streamer: COFFER_URL_ADVERTISE is not configurable")
	}

	// ca-init makes the CA in the streamers' COFFER_CA_DIR volume and
	// copies its certificate into the mssql container's ca-certificates
	caDir, _ := streamer.Environment["COFFER_CA_DIR"].(string)
	caVolume := mount(streamer, caDir)
	if caDir == "" || caVolume == "" {
		t.Fatalf("backup-streamer: COFFER_CA_DIR %q is not on a volume (%v)", caDir, streamer.Volumes)
	}
	if len(caInit.Command) < 2 || caInit.Command[0] != "ca" || caInit.Command[1] != "init" {
		t.Fatalf("ca-init: command %q; want coffer ca init", caInit.Command)
	}
	flags := map[string]string{}
	for i := 2; i+1 < len(caInit.Command); i += 2 {
		flags[caInit.Command[i]] = caInit.Command[i+1]
	}
	if v := mount(caInit, flags["--dir"]); v != caVolume {
		t.Errorf("ca-init: --dir %q is on volume %q; want the streamers' %q", flags["--dir"], v, caVolume)
	}
	cert := flags["--copy-to"]
	trustVolume := mount(caInit, filepath.Dir(cert))
	if filepath.Ext(cert) != ".crt" || trustVolume == "" {
		t.Errorf("ca-init: --copy-to %q; want a .crt file on a volume (SQL Server on Linux reads only *.crt)", cert)
	}
	if v := mount(mssql, "/var/opt/mssql/security/ca-certificates"); v == "" || v != trustVolume {
		t.Errorf("mssql: /var/opt/mssql/security/ca-certificates is volume %q; want %q, where ca-init copies the certificate", v, trustVolume)
	}
	if mount(mssql, caDir) != "" || slices.ContainsFunc(mssql.Volumes, func(v string) bool { return strings.HasPrefix(v, caVolume+":") }) {
		t.Errorf("mssql mounts the CA's key (volume %s)", caVolume)
	}
	for _, name := range []string{"mssql", "backup-streamer"} {
		if c := after(compose.Services[name], "ca-init"); c != "service_completed_successfully" {
			t.Errorf("%s: depends on ca-init with %q; want service_completed_successfully", name, c)
		}
	}

	// the streamer reads the key ca-init writes (mode 0600)
	docker, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var user string
	if m := regexp.MustCompile(`(?s)AS backup-streamer\n.*?\nUSER (\S+)`).FindSubmatch(docker); m != nil {
		user = string(m[1])
	}
	if user == "" || caInit.User != user {
		t.Errorf("ca-init: user %q; want the streamer's, %q in deploy/Dockerfile", caInit.User, user)
	}
}

// needsMasterKey reports whether service s is given the master key, as its
// declaration says.
func needsMasterKey(t *testing.T, s string) bool {
	t.Helper()
	i := slices.IndexFunc(declarations, func(d daemon.Service) bool { return d.Name == s })
	if i < 0 {
		t.Fatalf("no service %s is declared", s)
	}
	return declarations[i].NeedMasterKey
}

// k8sObject is what TestDeployKubernetes reads of a manifest's objects.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				ServiceAccountName string `yaml:"serviceAccountName"`
				Containers         []struct {
					Image string   `yaml:"image"`
					Env   []k8sEnv `yaml:"env"`
				} `yaml:"containers"`
				Volumes []struct {
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sEnv is a container's environment variable.
type k8sEnv struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// readK8s reads the objects of a manifest of deploy/k8s.
func readK8s(t *testing.T, path string) []k8sObject {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []k8sObject
	dec := yaml.NewDecoder(f)
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		objs = append(objs, o)
	}
}

// TestDeployKubernetes checks that deploy/k8s carries every service `coffer
// up` declares, which scripts/check-k8s.sh (valid objects, every manifest
// in the kustomization) cannot know: each has its manifest in the
// kustomization with a Deployment of its own image and ServiceAccount,
// logs in to NATS with its own seed's Secret and no other's, mounts the
// master key only if it needs it, and its seed's Secret is in
// secrets.example.yaml and in the loop of docs/deploy.md that creates them.
func TestDeployKubernetes(t *testing.T) {
	root := filepath.Join("..", "..")
	k8s := filepath.Join(root, "deploy", "k8s")
	var kust struct {
		Resources []string `yaml:"resources"`
		Images    []k8sEnv `yaml:"images"` // the name alone
	}
	raw, err := os.ReadFile(filepath.Join(k8s, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	secrets := map[string]bool{}
	for _, o := range readK8s(t, filepath.Join(k8s, "secrets.example.yaml")) {
		if o.Kind == "Secret" {
			secrets[o.Metadata.Name] = true
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var loop []string
	if m := regexp.MustCompile(`for s in ([a-z -]+); do\s+kubectl -n coffer create secret generic coffer-nats-\$s`).FindSubmatch(doc); m != nil {
		loop = strings.Fields(string(m[1]))
	}

	for _, s := range serviceNames() {
		name, image, seed := "coffer-"+s, "coffer/"+s, "coffer-nats-"+s
		if !slices.Contains(kust.Resources, s+".yaml") {
			t.Errorf("kustomization.yaml does not list %s.yaml", s)
		}
		pinned := false
		for _, i := range kust.Images {
			pinned = pinned || i.Name == image
		}
		if !pinned {
			t.Errorf("kustomization.yaml does not pin image %s", image)
		}
		if !secrets[seed] {
			t.Errorf("secrets.example.yaml has no Secret %s", seed)
		}
		if !slices.Contains(loop, s) {
			t.Errorf("docs/deploy.md's loop creating the seeds' Secrets (%v) leaves out %s", loop, s)
		}
		path := filepath.Join(k8s, s+".yaml")
		if _, err := os.Stat(path); err != nil {
			t.Errorf("service %s has no manifest: %v", s, err)
			continue
		}
		objs := readK8s(t, path)
		i := slices.IndexFunc(objs, func(o k8sObject) bool { return o.Kind == "Deployment" && o.Metadata.Name == name })
		if i < 0 {
			t.Errorf("%s.yaml has no Deployment %s", s, name)
			continue
		}
		if !slices.ContainsFunc(objs, func(o k8sObject) bool { return o.Kind == "ServiceAccount" && o.Metadata.Name == name }) {
			t.Errorf("%s.yaml has no ServiceAccount %s", s, name)
		}
		pod := objs[i].Spec.Template.Spec
		if pod.ServiceAccountName != name {
			t.Errorf("Deployment %s runs as ServiceAccount %q; want %s", name, pod.ServiceAccountName, name)
		}
		if len(pod.Containers) != 1 || pod.Containers[0].Image != image {
			t.Errorf("Deployment %s: containers %+v; want one, of image %s", name, pod.Containers, image)
			continue
		}
		if !slices.ContainsFunc(pod.Containers[0].Env, func(e k8sEnv) bool { return e.Name == "COFFER_NATS_NKEY_FILE" && e.Value != "" }) {
			t.Errorf("Deployment %s does not set COFFER_NATS_NKEY_FILE", name)
		}
		var mounted []string
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				mounted = append(mounted, v.Secret.SecretName)
			}
		}
		for _, sec := range mounted {
			if strings.HasPrefix(sec, "coffer-nats-") && sec != seed && sec != "coffer-nats-ca" {
				t.Errorf("Deployment %s mounts another service's seed, Secret %s", name, sec)
			}
		}
		if !slices.Contains(mounted, seed) || !slices.Contains(mounted, "coffer-nats-ca") {
			t.Errorf("Deployment %s mounts Secrets %v; want its seed's, %s, and coffer-nats-ca", name, mounted, seed)
		}
		if got := slices.Contains(mounted, "coffer-master-key"); got != needsMasterKey(t, s) {
			t.Errorf("Deployment %s: mounts the master key %v; want %v", name, got, !got)
		}
	}
}
