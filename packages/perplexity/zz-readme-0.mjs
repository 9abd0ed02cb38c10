import { perplexity, readEvaluationText } from '@layerquant/perplexity';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures'; // absolute paths: runs from any directory

const dir = shippedModelDir;
const model = await loadDecoderModel(await openCheckpoint(dir), await loadDecoderConfig(dir), { threads: 2 });
const ids = (await loadTokenizer(dir)).encode(await readEvaluationText(brownTestPath));
const { ppl, tokens, seconds } = await perplexity(model, ids, { seqlen: 512 }); // ppl 80.4017
