package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// s3Cmd is `coffer s3 policy`: it prints the S3 IAM policy of coffer's
// own S3 user, which may read, write, list and delete objects in the
// vault's bucket (under its prefix, when the vault has one) and nothing
// else: no other bucket, no bucket settings, no creating or deleting a
// bucket. The committer and the streamers use those credentials
// (COFFER_S3_ACCESS_KEY, COFFER_S3_SECRET_KEY); for MinIO, `mc admin
// policy create` takes the JSON as it is (docs/security.md).
func (a *app) s3Cmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy --bucket BUCKET",
		Short: "Print the S3 policy of a user that may use the vault's bucket and nothing else",
		Long: `Print the S3 IAM policy of coffer's own S3 user, which may read, write,
list and delete objects in the vault's bucket (under its prefix, when the
vault has one) and nothing else. For MinIO, mc admin policy create takes
the JSON as it is (docs/security.md).`,
		Example: "  coffer s3 policy --bucket coffer-vault --prefix site1 > coffer-policy.json",
		Args:    nargs(0, 0),
	}
	bucket := cmd.Flags().String("bucket", a.getenv("COFFER_S3_BUCKET"), "the vault's bucket (COFFER_S3_BUCKET)")
	prefix := cmd.Flags().String("prefix", a.getenv("COFFER_S3_PREFIX"), "the vault's prefix in the bucket, if it has one (COFFER_S3_PREFIX)")
	locked := cmd.Flags().Bool("object-lock", false, "the vault is immutable (coffer vault create --object-lock): also allow locking objects and deleting versions, never bypassing a lock")
	cmd.RunE = func(*cobra.Command, []string) error {
		if *bucket == "" {
			return usagef("--bucket is required (or COFFER_S3_BUCKET)")
		}
		return printS3Policy(*bucket, *prefix, *locked, a.stdout)
	}
	return group("s3", "Print the S3 policy of coffer's S3 user", "", cmd)
}

// printS3Policy prints the policy of coffer's S3 user of the vault in
// bucket under prefix; locked: an immutable vault's.
func printS3Policy(bucket, prefix string, locked bool, stdout io.Writer) error {
	p := s3Policy(bucket, prefix)
	if locked {
		p.Statement = append(p.Statement, s3LockStatements(bucket, prefix)...)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

type iamPolicy struct {
	Version   string         `json:"Version"`
	Statement []iamStatement `json:"Statement"`
}

type iamStatement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// s3Policy is the policy of a user that may use the vault in bucket under
// prefix, and nothing else.
func s3Policy(bucket, prefix string) iamPolicy {
	prefix = objectPrefix(prefix)
	list := iamStatement{
		Sid:      "CofferVaultList",
		Effect:   "Allow",
		Action:   []string{"s3:ListBucket", "s3:ListBucketMultipartUploads"},
		Resource: []string{"arn:aws:s3:::" + bucket},
	}
	if prefix != "" {
		list.Condition = map[string]map[string]any{"StringLike": {"s3:prefix": []string{prefix + "*"}}}
	}
	return iamPolicy{
		Version: "2012-10-17",
		Statement: []iamStatement{
			{
				Sid:      "CofferVaultLocation",
				Effect:   "Allow",
				Action:   []string{"s3:GetBucketLocation"},
				Resource: []string{"arn:aws:s3:::" + bucket},
			},
			list,
			{
				Sid:    "CofferVaultObjects",
				Effect: "Allow",
				Action: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
					"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
				Resource: []string{"arn:aws:s3:::" + bucket + "/" + prefix + "*"},
			},
		},
	}
}

// s3LockStatements are what an immutable vault's user needs besides:
// reading the bucket's Object Lock setting and the versions, setting and
// reading retentions, and deleting versions (which the store refuses
// while one is locked). Never s3:BypassGovernanceRetention, which would
// let the user delete what governance mode locks.
func s3LockStatements(bucket, prefix string) []iamStatement {
	prefix = objectPrefix(prefix)
	versions := iamStatement{
		Sid:      "CofferVaultVersions",
		Effect:   "Allow",
		Action:   []string{"s3:ListBucketVersions"},
		Resource: []string{"arn:aws:s3:::" + bucket},
	}
	if prefix != "" {
		versions.Condition = map[string]map[string]any{"StringLike": {"s3:prefix": []string{prefix + "*"}}}
	}
	return []iamStatement{{
		Sid:      "CofferVaultLockConfig",
		Effect:   "Allow",
		Action:   []string{"s3:GetBucketObjectLockConfiguration"},
		Resource: []string{"arn:aws:s3:::" + bucket},
	}, versions, {
		Sid:    "CofferVaultLockObjects",
		Effect: "Allow",
		Action: []string{"s3:GetObjectRetention", "s3:PutObjectRetention", "s3:GetObjectLegalHold",
			"s3:GetObjectVersion", "s3:DeleteObjectVersion"},
		Resource: []string{"arn:aws:s3:::" + bucket + "/" + prefix + "*"},
	}}
}

// objectPrefix is the vault's prefix as object names start with it: no
// leading slash, a trailing one unless empty.
func objectPrefix(prefix string) string {
	prefix = strings.TrimPrefix(prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}
