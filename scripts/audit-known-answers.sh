#!/usr/bin/env bash
# Known answers for `specdecode audit` (docs/audit.md), run for real on SmolLM2-135M-Instruct (Q8_0) on this CPU:
#   1. our server, speculation on vs the same server with k = 0          (must pass)
#   2. our server with the lossy `method: typical` vs k = 0               (must fail)
#   3. llama-cpp-python's server with its prompt-lookup draft vs without  (whatever it measures)
#   4. llama-server (make llama-server) with --spec-type ngram-mod vs plain (whatever it measures)
# Usage: scripts/audit-known-answers.sh [OUT_DIR]   (N=400 samples per side by default; N=... to change)
set -u
OUT=${1:-audit-known}
N=${N:-400}
PY=${PY:-.venv/bin/python}
SD=${SD:-.venv/bin/specdecode}
GGUF=$($PY -c "from specdecode.models.gguf import gguf_path; print(gguf_path('smollm2-135m', 'q8_0'))")
LLAMA_SERVER=${SPECDECODE_LLAMA_SERVER:-$HOME/.cache/specdecode/llama-server/bin/llama-server}
# a user turn that quotes an earlier exchange: the prompt's "assistant\n" recurs, so a prompt-lookup server drafts
# ("blue") from the very first token, where an M = 1 outcome can show what its verification does
PROMPT=${PROMPT:-'Name a colour.<|im_end|>
<|im_start|>assistant
blue<|im_end|>
<|im_start|>user
Name a colour.'}
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

wait_up() {  # URL
  for _ in $(seq 1 300); do curl -sf "$1/health" >/dev/null 2>&1 && return 0; curl -sf "$1/v1/models" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "server at $1 did not come up" >&2; return 1
}

audit() {  # NAME ENDPOINT REFERENCE PARAMS REF_PARAMS
  echo "== $1"
  /usr/bin/time -f "wall %e s" $SD audit --endpoint "$2/v1" --reference "$3/v1" --model "$6" --prompt "$PROMPT" \
    --tokens "${TOKENS:-1}" --samples "$N" --temperature 1.0 --concurrency 4 --params "$4" --reference-params "$5" --out "$OUT/$1"
  echo "exit $?"
}

$SD serve --backend llama.cpp --model smollm2-135m --drafter prompt-lookup -k 4 --port 18101 --max-batch 8 2>"$OUT/ours.log" &
PIDS+=($!)
wait_up http://127.0.0.1:18101 && {
  audit ours-speculative http://127.0.0.1:18101 http://127.0.0.1:18101 '{"k": 4}' '{"k": 0}' smollm2-135m
  audit ours-typical http://127.0.0.1:18101 http://127.0.0.1:18101 '{"k": 4, "method": "typical"}' '{"k": 0}' smollm2-135m
}
cleanup; PIDS=()

if $PY -c "import llama_cpp.server.app" 2>/dev/null; then
  common=(--model "$GGUF" --host 127.0.0.1 --n_ctx 2048 --flash_attn true --interrupt_requests false)
  $PY -m llama_cpp.server "${common[@]}" --port 18102 2>"$OUT/lcp-plain.log" &
  PIDS+=($!)
  $PY -m llama_cpp.server "${common[@]}" --port 18103 --draft_model prompt-lookup-decoding \
    --draft_model_num_pred_tokens 10 2>"$OUT/lcp-pld.log" &
  PIDS+=($!)
  wait_up http://127.0.0.1:18102 && wait_up http://127.0.0.1:18103 && \
    audit llama-cpp-python-pld http://127.0.0.1:18103 http://127.0.0.1:18102 '{}' '{}' "$GGUF"
  cleanup; PIDS=()
else
  echo "== llama-cpp-python-pld: skipped (pip install 'llama-cpp-python[server]')"
fi

if [ -x "$LLAMA_SERVER" ]; then
  $LLAMA_SERVER -m "$GGUF" --host 127.0.0.1 --port 18104 -fa on --no-webui -c 4096 2>"$OUT/ls-plain.log" &
  PIDS+=($!)
  $LLAMA_SERVER -m "$GGUF" --host 127.0.0.1 --port 18105 -fa on --no-webui -c 4096 --spec-type ngram-mod \
    --spec-draft-n-max 16 2>"$OUT/ls-ngram.log" &
  PIDS+=($!)
  wait_up http://127.0.0.1:18104 && wait_up http://127.0.0.1:18105 && \
    audit llama-server-ngram-mod http://127.0.0.1:18105 http://127.0.0.1:18104 '{}' '{}' smollm2
else
  echo "== llama-server: skipped (make llama-server)"
fi
