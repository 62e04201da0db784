"""An offline topic task in plain English, for pretrained text encoders.

Four topics (sport, food, music, computing) in sentences like "I read a long
article about cricket on the train this morning." The sentence frames are
shared by all topics, so only the topic phrases carry the label, and each
split draws its phrases from its own pool: validation and test sentences talk
about things ("badminton", "the ramen bar", "the motherboard") that no
training sentence mentions. So test accuracy measures what an encoder knows
about words beyond the labelled examples -- what pretraining should bring and
what a model trained from scratch on a few hundred labels cannot have.

Deterministic (a fixed seed per split); no download.
"""

import random

SPLITS = {"train": 1000, "validation": 200, "test": 400}  # sentences
CLASSES = ("sport", "food", "music", "computing")

# Per topic: (train phrases, validation phrases, test phrases), disjoint.
PHRASES = {
    "sport": (
        ("football", "the tennis final", "basketball", "the marathon",
         "the world cup", "cycling races", "the swimming championship",
         "the rugby season", "golf", "boxing", "the league table",
         "penalty kicks", "the new coach of the team", "ski jumping",
         "the referee's decisions", "the goalkeeper"),
        ("cricket", "volleyball", "ice hockey", "the olympic sprinters",
         "baseball", "the wrestling match", "table tennis", "the relay race"),
        ("badminton", "the rowing regatta", "horse racing",
         "the snooker championship", "the javelin throw", "handball",
         "the squash tournament", "the figure skating final",
         "the striker's hat trick", "the decathlon", "surfing competitions",
         "the fencing team")),
    "food": (
        ("pasta recipes", "the new bakery", "chocolate cake", "fresh bread",
         "the vegetable soup", "grilled fish", "the pizza place downtown",
         "spicy curry", "breakfast pancakes", "the farmers' market",
         "olive oil", "roast chicken", "homemade jam", "the sushi restaurant",
         "apple pie", "cheese"),
        ("lasagna", "the dumplings", "a lemon tart", "the barbecue ribs",
         "the noodle shop", "fried rice", "mushroom risotto", "the cookbook"),
        ("tacos", "the croissants", "beef stew", "the salad dressing",
         "a strawberry smoothie", "garlic butter", "the ramen bar",
         "the omelette", "roasted potatoes", "the cinnamon rolls",
         "the peanut butter sandwich", "the chef's dessert menu")),
    "music": (
        ("the guitar", "the jazz festival", "the new album", "the orchestra",
         "piano lessons", "the rock band", "the choir", "the violin concerto",
         "hip hop", "the drummer", "the opera", "the concert tickets",
         "the songwriter", "classical symphonies", "the music charts",
         "the singer's tour"),
        ("the saxophone", "the cello", "the folk singer", "the rap lyrics",
         "the string quartet", "the pop star", "the trumpet player",
         "the karaoke night"),
        ("the flute", "the banjo", "the music video", "the harp",
         "the conductor's baton", "the punk band", "the accordion",
         "the vinyl records", "the bass player", "the melody of the chorus",
         "the harmonica", "the reggae festival")),
    "computing": (
        ("the new laptop", "software bugs", "the programming course",
         "the internet connection", "the smartphone app", "computer viruses",
         "the database server", "the keyboard", "the operating system update",
         "the website", "passwords", "cloud storage", "the video game console",
         "the printer", "artificial intelligence", "the code review"),
        ("the spreadsheet", "the router", "the software engineer",
         "the email server", "the hard drive", "the python script",
         "the tablet", "the firewall"),
        ("the motherboard", "cyber attacks", "the web browser",
         "the search engine", "the graphics card", "the compiler",
         "the mobile network", "the hackers", "the data center",
         "the usb cable", "the touchscreen", "the computer mouse")),
}

FRAMES = (
    "My sister spent the whole afternoon talking about {a}.",
    "Everyone at the office seems to care about {a} and {b} these days.",
    "I read a long article about {a} on the train this morning.",
    "The local newspaper ran a story on {a} last week.",
    "We argued about {a} until midnight.",
    "Her new podcast is mostly about {a} and {b}.",
    "He never stops complaining about {a}.",
    "The documentary focused on {a}, with a short segment on {b}.",
    "Our teacher asked us to write an essay about {a}.",
    "They were surprised by how much the children knew about {a}.",
    "A friend recommended a book on {a} and {b}.",
    "The conference had a whole session dedicated to {a}.",
)


def pairs(split: str) -> list[dict]:
  """[{'source': sentence, 'target': topic}], balanced, in a fixed order."""
  if split not in SPLITS:
    raise ValueError(f"sentence_topics has no split {split!r}; its splits "
                     f"are {list(SPLITS)}.")
  pool = list(SPLITS).index(split)
  rng = random.Random(f"sentence_topics/{split}")
  out = []
  for i in range(SPLITS[split]):
    topic = CLASSES[i % len(CLASSES)]
    a, b = rng.sample(PHRASES[topic][pool], 2)
    out.append({"source": rng.choice(FRAMES).format(a=a, b=b),
                "target": topic})
  rng.shuffle(out)
  return out
