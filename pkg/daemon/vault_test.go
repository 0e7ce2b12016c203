package daemon_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/pkg/daemon"
)

// TestVaultStoreProxy checks the proxy settings' bad combinations: each is
// refused, saying what to do, and no error repeats the password.
func TestVaultStoreProxy(t *testing.T) {
	base := daemon.VaultStore{S3Endpoint: "s3.example:9000", S3Bucket: "b", S3AccessKey: "a", S3SecretKey: "s"}
	for _, tc := range []struct {
		name                  string
		proxy, user, password string
		want                  string // in the error; "" for none
	}{
		{"none", "", "", "", ""},
		{"proxy", "http://proxy.example:3128", "", "", ""},
		{"proxy with credentials", "https://proxy.example:3128", "coffer", "s3cret-pw", ""},
		{"credentials in the URL", "http://coffer:s3cret-pw@proxy.example:3128", "", "", "--s3-proxy-user"},
		{"password without a user", "http://proxy.example:3128", "", "s3cret-pw", "without a proxy user"},
		{"user without a proxy", "", "coffer", "", "no proxy"},
		{"not http", "socks5://proxy.example:1080", "", "", "want an http:// or https:// URL"},
		{"not a URL", "http://proxy example:3128\x7f", "", "s3cret-pw", "not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			v.S3Proxy, v.S3ProxyUser, v.S3ProxyPassword = tc.proxy, tc.user, tc.password
			_, err := v.Open()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open: %v; want an error saying %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret-pw"):
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}
