package emulator_test

import (
	"testing"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	option1 "github.com/anthropics/anthropic-sdk-go/option"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
)

const testKey = "sk-ant-test-key-0123456789"

// clientV2 is the current SDK (Bearer auth, anthropic-version 2026-10-21), with
// retries off so a test sees every response.
func clientV2(url string, opts ...option.RequestOption) anthropic.Client {
	base := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(url),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
	}
	return anthropic.NewClient(append(base, opts...)...)
}

// clientV1 is the previous SDK generation (x-api-key, anthropic-version 2023-06-01).
func clientV1(url string, opts ...option1.RequestOption) anthropic1.Client {
	base := []option1.RequestOption{
		option1.WithBaseURL(url),
		option1.WithAPIKey(testKey),
		option1.WithMaxRetries(0),
	}
	return anthropic1.NewClient(append(base, opts...)...)
}

func start(t *testing.T, cfg emulator.Config) *emulator.Running {
	t.Helper()
	return emulator.StartTB(t, cfg)
}
