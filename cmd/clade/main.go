// Command clade pushes large workloads through the Anthropic Claude API as fast and as
// cheaply as the account allows. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/clade-dev/clade/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
