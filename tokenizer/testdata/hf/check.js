// Encodes texts with Hugging Face tokenizers (Rust, Node bindings) from a
// tokenizer.json: node check.js TOKENIZER.json TEXTS.json OUT.json
// TEXTS.json is an array of strings; OUT.json gets [{ids, decoded}].
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, textsPath, outPath] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
  const out = [];
  for (const text of texts) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = enc.getIds();
    const decoded = await tok.decode(ids, false);
    out.push({ ids, decoded });
  }
  fs.writeFileSync(outPath, JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
