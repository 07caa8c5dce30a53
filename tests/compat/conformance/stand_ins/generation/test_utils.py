"""Stand-in for transformers' `tests/generation/test_utils.py`, which its source distribution lacks.

`test_modeling_common.py` imports `GenerationTesterMixin` from it and requires a model that can
generate to have a tester that inherits it. In its place, hf-arith's own checks of `generate`,
written for any decoder-only tester: greedy decoding through the cache equals decoding without it;
a left-padded row continues as it does alone; a prompt given as `inputs_embeds` (with the tester's
other inputs, e.g. `abacus_positions`) continues as its `input_ids` do; a static cache either works
or is refused with a `ValueError`, and works where the model declares full-graph compile.
"""

import copy

import torch
from transformers import GenerationMixin


class GenerationTesterMixin:
    max_new_tokens = 4

    def _inputs_for_generate(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache")}
        return config, inputs

    def _greedy(self, model, config, **inputs):
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=None,
                      pad_token_id=config.pad_token_id, output_scores=True, return_dict_in_generate=True)
        return model.generate(**inputs, **kwargs)

    def _models(self):
        config, inputs = self._inputs_for_generate()
        for model_class in self.all_generative_model_classes:
            torch.manual_seed(0)
            yield model_class, config, inputs, model_class(copy.deepcopy(config)).eval()

    def test_inherits_generation_mixin(self):
        for model_class in self.all_generative_model_classes:
            self.assertIn(GenerationMixin, model_class.__bases__)

    def test_greedy_generate_with_cache_equals_without(self):
        for model_class, config, inputs, model in self._models():
            with self.subTest(model_class.__name__):
                cached = self._greedy(model, config, **inputs)
                uncached = self._greedy(model, config, **inputs, use_cache=False)
                self.assertTrue(torch.equal(cached.sequences, uncached.sequences))
                torch.testing.assert_close(torch.stack(cached.scores), torch.stack(uncached.scores),
                                           atol=1e-4, rtol=1e-4)

    def test_left_padded_rows_continue_as_alone(self):
        for model_class, config, inputs, model in self._models():
            with self.subTest(model_class.__name__):
                batched = self._greedy(model, config, **inputs).sequences[:, -self.max_new_tokens:]
                for row in range(inputs["input_ids"].shape[0]):
                    real = inputs["attention_mask"][row].bool()
                    alone = {k: v[row : row + 1, real] for k, v in inputs.items() if isinstance(v, torch.Tensor)}
                    new = self._greedy(model, config, **alone).sequences[:, -self.max_new_tokens:]
                    self.assertTrue(torch.equal(new[0], batched[row]))

    def test_generate_from_inputs_embeds_equals_input_ids(self):
        for model_class, config, inputs, model in self._models():
            with self.subTest(model_class.__name__):
                expected = self._greedy(model, config, **inputs).sequences[:, -self.max_new_tokens:]
                embeds = {k: v for k, v in inputs.items() if k != "input_ids"}
                embeds["inputs_embeds"] = model.get_input_embeddings()(inputs["input_ids"])
                got = self._greedy(model, config, **embeds).sequences
                self.assertTrue(torch.equal(got[:, -self.max_new_tokens:], expected))

    def test_static_cache_works_or_is_refused(self):
        for model_class, config, inputs, model in self._models():
            with self.subTest(model_class.__name__):
                dynamic = self._greedy(model, config, **inputs).sequences
                try:
                    static = self._greedy(model, config, **inputs, cache_implementation="static").sequences
                except ValueError:
                    # Full-graph compile needs a static cache: a model that declares it must take one.
                    self.assertFalse(model_class._can_compile_fullgraph)
                    continue
                self.assertTrue(torch.equal(static, dynamic))
