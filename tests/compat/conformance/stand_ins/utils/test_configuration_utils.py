"""Stand-in for transformers' `tests/utils/test_configuration_utils.py`, absent from its source
distribution. `ConfigTester.check_config_arguments_init` builds a config from these and checks that
each field keeps its value: common `PretrainedConfig` fields, each set away from its default."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["ArithForCausalLM"],
    "finetuning_task": "addition",
    "problem_type": "regression",
}
