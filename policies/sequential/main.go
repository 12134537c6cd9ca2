//go:build wasip1

// Command sequential is the built-in replayd policy "sequential"; its logic lives in
// replayd/policies/recipe and is documented in policies/README.md.
package main

import (
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

func init() { sdk.Register(&recipe.Sequential{}) }

func main() {}
