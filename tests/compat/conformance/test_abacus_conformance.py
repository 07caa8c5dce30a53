"""transformers' `ModelTesterMixin`, `ConfigTester` (and the generation checks that stand in for its
`GenerationTesterMixin`) on the Abacus looped transformer: NoPE, FIRE and RoPE inside attention,
Abacus positions on digits in each. Written as transformers writes a model's tests
(`tests/models/olmo/test_modeling_olmo.py`): a small tester, then one test class per variant."""

import unittest

from arith_inputs import DIGITS, left_padded_additions
from modeling import AbacusConfig, AbacusForCausalLM, AbacusModel
from modeling.layers import compute_abacus_positions
from transformers_tests.generation.test_utils import GenerationTesterMixin
from transformers_tests.test_configuration_common import ConfigTester
from transformers_tests.test_modeling_common import ModelTesterMixin


class AbacusModelTester:
    def __init__(
        self,
        parent,
        attention_positions="none",
        batch_size=4,
        seq_length=10,
        is_training=True,
        vocab_size=31,
        hidden_size=32,
        num_hidden_layers=1,
        num_recurrences=2,
        num_attention_heads=4,
        intermediate_size=37,
    ):
        self.parent = parent
        self.attention_positions = attention_positions
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_recurrences = num_recurrences
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        # The block of L layers runs R times: hidden states and attentions come per application.
        self.config_num_hidden_layers = num_hidden_layers
        self.num_hidden_layers = num_hidden_layers * num_recurrences

    def get_config(self):
        return AbacusConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.config_num_hidden_layers,
            num_recurrences=self.num_recurrences,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            attention_positions=self.attention_positions,
            abacus_num_positions=32,
            abacus_max_k=4,
            max_position_embeddings=64,
            digit_token_ids=DIGITS,
        )

    def prepare_config_and_inputs(self):
        input_ids, attention_mask = left_padded_additions(self.batch_size, self.seq_length)
        return self.get_config(), input_ids, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask = self.prepare_config_and_inputs()
        # Given explicitly, so that calls with `inputs_embeds` instead of `input_ids` have them too.
        abacus_positions = compute_abacus_positions(input_ids, DIGITS)
        return config, {"input_ids": input_ids, "attention_mask": attention_mask, "abacus_positions": abacus_positions}

    def create_and_check_model(self, config, input_ids, attention_mask):
        model = AbacusModel(config).eval()
        result = model(input_ids, attention_mask=attention_mask)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))


class AbacusConformanceTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    attention_positions = "none"
    all_model_classes = (AbacusModel, AbacusForCausalLM)
    # New models: transformers runs this check of `_init_weights` only for models from 2023 on.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = AbacusModelTester(self, attention_positions=self.attention_positions)
        self.config_tester = ConfigTester(self, config_class=AbacusConfig, hidden_size=32)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())


class AbacusFireConformanceTest(AbacusConformanceTest):
    attention_positions = "fire"


class AbacusRopeConformanceTest(AbacusConformanceTest):
    attention_positions = "rope"
