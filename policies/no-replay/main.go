//go:build wasip1

// Command no-replay is the built-in replayd policy "no-replay"; its logic lives in
// replayd/policies/recipe and is documented in policies/README.md.
package main

import (
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

func init() { sdk.Register(recipe.NewNoReplay()) }

func main() {}
