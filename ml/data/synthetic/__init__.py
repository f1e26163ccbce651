"""A realistic, deterministic, streaming generator of the ``ab_test.csv`` export.

The generative model (documented in ``docs/generator.md``) plants structure a recommender
can learn and tests can verify: categories and sub-categories, users with category tastes
and a personal price tier, complement pairs bought together, re-bought (consumable) items,
rising and fading items, and sessions in which views lead to carts and purchases.
``structure`` builds that truth from the seed, ``events`` draws the rows of a chunk of users,
``writer`` streams them to the file.
"""

from ml.data.synthetic.structure import (
    GenerateStats,
    GeneratorConfig,
    PlantedStructure,
    id_strings,
    planted_structure,
)
from ml.data.synthetic.writer import generate_export

__all__ = ["GenerateStats", "GeneratorConfig", "PlantedStructure", "generate_export", "id_strings", "planted_structure"]
