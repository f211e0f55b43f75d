// Command clade pushes large workloads through the Anthropic Claude API as fast and as
// cheaply as the account allows. See README.md.
package main

import (
	"os"

	"github.com/clade-dev/clade/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
