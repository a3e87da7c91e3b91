"""The words of the IOI prompts (Wang et al. 2022), as constants.

Source: the IOI dataset of Wang, Variengien, Conmy, Shlegeris and Steinhardt, "Interpretability in
the Wild: a Circuit for Indirect Object Identification in GPT-2 small" (2022; ``ioi_dataset.py`` of
their code, also shipped by ACDC and ARENA). Their names were chosen to be one GPT-2 token each
with a leading space (``" Mary"``); :func:`hypotheses.published.gpt2_ioi.make_data` checks this
again with the tokenizer it is given and refuses a name that is not.

Templates use ``{S}`` and ``{IO}`` for the two names (``{A}``/``{B}`` in the paper's BABA form:
the subject ``S`` is named first). The final name, the answer, is *not* part of the template:
every template ends with ``" to"`` and the model must say ``" " + IO`` next. The ABBA form (IO
named first) swaps the first two names.
"""

from __future__ import annotations

__all__ = ["NAMES", "PLACES", "OBJECTS", "TEMPLATES"]

#: One GPT-2 token each with a leading space (Wang et al.'s list).
NAMES: tuple[str, ...] = (
    "Aaron", "Adam", "Alan", "Alex", "Alice", "Amy", "Anderson", "Andre", "Andrew", "Andy",
    "Anna", "Anthony", "Arthur", "Austin", "Blake", "Brandon", "Brian", "Carter", "Charles", "Charlie",
    "Christian", "Christopher", "Clark", "Cole", "Collins", "Connor", "Crew", "Crystal", "Daniel", "David",
    "Dean", "Edward", "Elizabeth", "Emily", "Eric", "Eva", "Ford", "Frank", "George", "Georgia",
    "Graham", "Grant", "Henry", "Ian", "Jack", "Jacob", "Jake", "James", "Jamie", "Jane",
    "Jason", "Jay", "Jennifer", "Jeremy", "Jessica", "John", "Jonathan", "Jordan", "Joseph", "Joshua",
    "Justin", "Kate", "Kelly", "Kevin", "Kyle", "Laura", "Leon", "Lewis", "Lisa", "Louis",
    "Luke", "Madison", "Marco", "Marcus", "Maria", "Mark", "Martin", "Mary", "Matthew", "Max",
    "Michael", "Michelle", "Morgan", "Patrick", "Paul", "Peter", "Prince", "Rachel", "Richard", "River",
    "Robert", "Roman", "Rose", "Ruby", "Russell", "Ryan", "Sarah", "Scott", "Sean", "Simon",
    "Stephen", "Steven", "Sullivan", "Taylor", "Thomas", "Tyler", "Victoria", "Warren", "William",
)

PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")

OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")

#: Wang et al.'s BABA templates (subject first), the answer removed. Index = ``template`` column.
TEMPLATES: tuple[str, ...] = (
    "Then, {S} and {IO} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {S} and {IO} had a lot of fun at the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {S} and {IO} were working at the {PLACE}. {S} decided to give a {OBJECT} to",
    "Then, {S} and {IO} were thinking about going to the {PLACE}. {S} wanted to give a {OBJECT} to",
    "Then, {S} and {IO} had a long argument, and afterwards {S} said to",
    "After {S} and {IO} went to the {PLACE}, {S} gave a {OBJECT} to",
    "When {S} and {IO} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "When {S} and {IO} got a {OBJECT} at the {PLACE}, {S} decided to give the {OBJECT} to",
    "While {S} and {IO} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "While {S} and {IO} were commuting to the {PLACE}, {S} gave a {OBJECT} to",
    "After the lunch, {S} and {IO} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Afterwards, {S} and {IO} went to the {PLACE}. {S} gave a {OBJECT} to",
    "Then, {S} and {IO} had a long argument. Afterwards {S} said to",
    "The {PLACE} {S} and {IO} went to had a {OBJECT}. {S} gave it to",
    "Friends {S} and {IO} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "When {S} and {IO} went to the {PLACE}, {S} gave a {OBJECT} to",  # the paper's running example (Fig. 1)
)
