#!/usr/bin/env bash
# PyTorch parity of the model core (make parity): logits, loss, every
# gradient and two AdamW steps against model/parity/reference.py on three
# configs, plus the finite-difference gradient checks of each operation.
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-}
export PYTHON=${PYTHON:-/usr/bin/python3}
tagflag=()
if [[ -n "${TAGS// /}" ]]; then tagflag=(-tags "$TAGS"); fi
go test "${tagflag[@]}" -count=1 -run 'Parity|Grad' -v ./model/...
