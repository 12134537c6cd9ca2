//go:build wasip1

// Command sft-only is the built-in replayd policy "sft-only"; its logic lives in
// replayd/policies/recipe and is documented in policies/README.md.
package main

import (
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

func init() { sdk.Register(recipe.NewSFTOnly()) }

func main() {}
