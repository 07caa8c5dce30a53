"""transformers' `ModelTesterMixin`, `ConfigTester` (and the generation checks that stand in for its
`GenerationTesterMixin`) on ArithOlmo, with and without Abacus positions. Written as transformers
writes `tests/models/olmo/test_modeling_olmo.py`: a small tester, then one test class per variant.
The vocabulary (99) is padded to 128 embedding rows, so resizing and logits cross that gap."""

import unittest

from arith_inputs import DIGITS, left_padded_additions
from modeling import ArithOlmoConfig, ArithOlmoForCausalLM, ArithOlmoModel
from modeling.layers import compute_abacus_positions
from transformers_tests.generation.test_utils import GenerationTesterMixin
from transformers_tests.test_configuration_common import ConfigTester
from transformers_tests.test_modeling_common import ModelTesterMixin


class ArithOlmoModelTester:
    def __init__(
        self,
        parent,
        abacus=False,
        batch_size=4,
        seq_length=10,
        is_training=True,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
    ):
        self.parent = parent
        self.abacus = abacus
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size

    def get_config(self):
        return ArithOlmoConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=64,
            init_fn="normal",
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            abacus=self.abacus,
            digit_token_ids=DIGITS if self.abacus else None,
            abacus_num_positions=32,
            abacus_max_k=4,
        )

    def prepare_config_and_inputs(self):
        input_ids, attention_mask = left_padded_additions(self.batch_size, self.seq_length)
        return self.get_config(), input_ids, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.abacus:
            # Given explicitly, so that calls with `inputs_embeds` instead of `input_ids` have them too.
            inputs["abacus_positions"] = compute_abacus_positions(input_ids, DIGITS)
        return config, inputs

    def create_and_check_model(self, config, input_ids, attention_mask):
        model = ArithOlmoModel(config).eval()
        result = model(input_ids, attention_mask=attention_mask)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))


class ArithOlmoConformanceTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    abacus = False
    all_model_classes = (ArithOlmoModel, ArithOlmoForCausalLM)
    # New models: transformers runs this check of `_init_weights` only for models from 2023 on.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = ArithOlmoModelTester(self, abacus=self.abacus)
        self.config_tester = ConfigTester(self, config_class=ArithOlmoConfig, hidden_size=32)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())


class ArithOlmoAbacusConformanceTest(ArithOlmoConformanceTest):
    abacus = True
