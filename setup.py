"""Which packages the wheel holds; everything else about the project is in pyproject.toml.

Packages are found, not listed, so that a new subpackage ships without anyone remembering to add it
(a hand-written list once left `hf_arith.hub` out of every wheel). pyproject.toml cannot say this
alone: `packages.find` ignores `package-dir`, and two top-level folders install inside hf_arith.
"""

from setuptools import find_namespace_packages, setup

# `modeling/` sits at the top level because it is the folder that travels to the Hub, and the
# model-card templates are a top-level folder too; inside the library both live under hf_arith.
MAPPED = {"hf_arith.modeling": "modeling", "hf_arith.model_cards": "model_cards"}

# Namespace discovery, because setuptools sees data folders (resources/, the `evaluate` metric
# module) as packages too, and a folder without __init__.py would otherwise be dropped silently.
packages = find_namespace_packages(include=["hf_arith", "hf_arith.*"])
for package, folder in MAPPED.items():
    packages += [package] + [f"{package}.{sub}" for sub in find_namespace_packages(folder)]

setup(packages=packages, package_dir=MAPPED)
