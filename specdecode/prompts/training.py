"""The built-in training prompts of ``specdecode distill``: open-ended single messages (templates x topics)
and two-turn chats, disjoint from the benchmark prompts (``tasks``), whose chat and story prompts are the
held-out evaluation set. Data only: nothing here loads or runs a model.
"""

from __future__ import annotations

import itertools
import random

from .tasks import TASKS

_TEMPLATES = [
    "Write a short story about {t}.", "Explain {t} to a ten-year-old.", "Give me five tips about {t}.",
    "What are the pros and cons of {t}?", "Write a poem about {t}.", "Describe {t} in a few sentences.",
    "I want to learn about {t}. Where should I start?", "Tell me an interesting fact about {t}.",
    "Write a friendly email to a colleague about {t}.", "What is the history of {t}?",
    "Can you give me advice on {t}?", "Write a short dialogue between two friends about {t}.",
    "Summarize what people usually get wrong about {t}.", "Write a blog post introduction about {t}.",
    "How would you explain {t} to someone from the 1800s?", "Make a weekly plan that involves {t}.",
    "Why do people care about {t}?", "Write a diary entry about {t}.", "List some questions a child might ask about {t}.",
    "Write a product description for something related to {t}.", "What would a day focused on {t} look like?",
    "Give me a fun quiz with three questions about {t}.", "Write a motivational message about {t}.",
    "Compare {t} today with {t} fifty years ago.", "Tell a bedtime story that involves {t}.",
    "What are common mistakes beginners make with {t}?", "Write a short speech about {t}.",
    "How can a family enjoy {t} together?", "Write a letter to a friend describing {t}.",
    "Explain the basics of {t} in simple steps.", "What should I know before getting into {t}?",
    "Write a funny short scene about {t}.",
]
_TOPICS = [
    "gardening", "the ocean", "a rainy day", "learning to cook", "saving money", "the moon", "a city at night",
    "training a puppy", "climate change", "friendship", "old trains", "volcanoes", "healthy breakfasts", "chess",
    "public speaking", "the first day at a new job", "bees", "recycling", "mountain hiking", "coffee", "jazz music",
    "the internet", "time management", "a haunted house", "winter sports", "ancient Egypt", "electric cars",
    "writing a resume", "birds that migrate", "a small bakery", "meditation", "the solar system", "board games",
    "learning a language", "photography", "a lost key", "honesty", "sleep", "a desert island", "origami",
    "renewable energy", "a family dinner", "robots in factories", "the library", "a summer festival", "knitting",
    "moving to a new city", "penguins", "teamwork", "a broken bicycle", "the human heart", "dinosaurs", "tea",
    "starting a small business", "a snowy village", "video games", "kindness", "rivers", "a birthday surprise",
    "camping", "running a marathon", "houseplants", "painting with watercolors", "a farmers market", "fishing",
    "the rainforest", "learning to swim", "pirates", "a road trip", "baking bread", "owls", "the weather",
    "a wedding", "yoga", "city parks", "the stock market", "cats", "horses", "a science fair", "volunteering",
    "making pizza", "a thunderstorm", "space travel", "music lessons", "a small island town", "bicycles",
    "a museum visit", "the human brain", "soccer", "smartphones", "clouds", "a treasure hunt",
    "an old castle", "whales", "healthy habits", "a school play", "cleaning the house", "the Olympics",
    "a magic trick", "street food", "a lighthouse", "planting trees", "a job interview", "snow", "butterflies",
    "a family pet", "learning math", "the Roman Empire", "a garden party", "first aid", "a mountain cabin",
    "wind turbines", "a night sky full of stars", "making friends", "a talent show", "recipes with rice",
    "a detective", "the desert", "airplanes", "a new neighbor", "staying focused", "birdwatching", "a market town",
    "the Arctic", "a rainy weekend", "reading books", "composting", "a science museum", "an old map", "kites",
    "handwriting", "grandparents", "a lemonade stand", "a long train journey", "exercise at home",
]
# two-turn prompts (like the held-out chat ones): first message, a short canned assistant reply, follow-up
_TURNS = [
    ("I'm planning something around {t}.", "That sounds fun! What would you like help with?", "Can you give me a simple plan?"),
    ("I've been thinking about {t} lately.", "Interesting! What about it is on your mind?", "Why does it matter so much?"),
    ("My friend loves {t}.", "Nice! Are you looking for a gift idea or something else?", "A gift idea, please."),
    ("I want to write something about {t}.", "Great idea. Should it be a story, a poem or an essay?", "A short story."),
    ("Tell me about {t}.", "Sure! Do you want a short overview or more detail?", "A detailed overview, please."),
    ("I'm new to {t}.", "Welcome! How much time can you spend on it each week?", "About two hours."),
]


def training_prompts(n: int, seed: int = 0) -> list:
    """n distinct open-ended prompts (shuffled): single messages (templates x topics) and two-turn chats
    (as message lists); at most (32 + 6) x 135 = 5130."""
    allp: list = [t.format(t=topic) for t, topic in itertools.product(_TEMPLATES, _TOPICS)]
    allp += [[{"role": "user", "content": a.format(t=topic)}, {"role": "assistant", "content": r},
              {"role": "user", "content": f}] for (a, r, f), topic in itertools.product(_TURNS, _TOPICS)]
    random.Random(seed).shuffle(allp)
    if n > len(allp):
        raise ValueError(f"at most {len(allp)} built-in training prompts, asked for {n}")
    return allp[:n]


def held_out_prompts() -> list[list[dict]]:
    """The benchmark's open-ended prompts (chat and story), never used for training."""
    return TASKS["chat"] + TASKS["story"]
