package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// benchKeys writes a keys file of one key whose limits the benchmark never reaches, but
// which every request is counted against (docs/tenants.md), and sets the router's
// environment to use it. It returns the key. The hash is the router's: HMAC-SHA-256 under
// the pepper, hex, after "hmac-sha256:".
func benchKeys(env envFlag, dir string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	key := "pk_" + base64.RawURLEncoding.EncodeToString(raw)
	pepper := base64.RawURLEncoding.EncodeToString(raw[:24]) + "-bench-pepper"
	m := hmac.New(sha256.New, []byte(pepper))
	m.Write([]byte(key))
	file := fmt.Sprintf("keys:\n- id: bench\n  tenant: bench\n  hash: hmac-sha256:%s\n  requestsPerMinute: 1000000000\n  tokensPerMinute: 1000000000000\n  tokenBudget: 1000000000000000\n  budgetPeriod: month\n",
		hex.EncodeToString(m.Sum(nil)))
	path := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		return "", err
	}
	env["ROUTER_API_KEYS_FILE"] = path
	env["ROUTER_API_KEY_PEPPER"] = pepper
	return key, nil
}

// withKey sends key as dapr-api-token on every call, as Dapr's SDKs do.
func withKey(key string) grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "dapr-api-token", key), method, req, reply, cc, opts...)
	})
}
