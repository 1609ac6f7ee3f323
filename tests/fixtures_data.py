"""A tiny world for the fast tests: six lore files, a cast of three, router seeds and a few style examples."""

LORE = {
    "clock-room": """
        ---
        title: The Clock Room
        kind: room
        npc_scope: all
        chapter: 1
        ---
        # The Clock Room

        ## The great clock
        The Clock Room holds a brass clock with 13 hours on its face. It was built by the clockmaker Oriol Santpere
        in 1612 and it strikes thirteen times at dusk.

        ## Visitors
        Readers may sit on the 4 green benches but must not touch the pendulum.
        """,
    "lending-rules": """
        ---
        title: Rules of Lending
        kind: rule
        npc_scope: all
        chapter: 1
        ---
        # Rules of Lending

        A reader may borrow at most 3 books at once. Books return within 21 days. A late book costs one silver
        reale per week, paid to the Head Archivist.
        """,
    "founding": """
        ---
        title: The Founding
        kind: history
        npc_scope: all
        chapter: 1
        ---
        # The Founding

        The Library was founded in 1387 by the abbess Leonor de Quirós above the town of Valdescura. She carried
        the first 40 books up the cliff path on the back of a mule named Paciencia.
        """,
    "the-fire-truth": """
        ---
        title: The Truth about the Fire
        kind: history
        npc_scope: all
        chapter: 3
        ---
        # The Truth about the Fire

        The Fire of 1731 was set on purpose by Brother Anselmo Quevedo, who lit the east wing with a lamp of
        whale oil to hide the Lost Index from the Inquisition.
        """,
    "wardens-keys": """
        ---
        title: The Warden's Keys
        kind: item
        npc_scope: [warden]
        chapter: 1
        ---
        # The Warden's Keys

        The Warden carries a ring of 9 iron keys. The smallest key, painted red, opens the crypt gate.
        """,
    "garden-of-ink": """
        ---
        title: The Garden of Ink
        kind: room
        npc_scope: all
        chapter: 2
        ---
        # The Garden of Ink

        Behind the kitchens grows the Garden of Ink, where oak galls are picked for ink each October.
        Its fountain runs black water and its gardener is the mute Sister Remei.
        """,
}

NPCS_YAML = """
npcs:
  - id: director
    name: El Director
    role: director
    persona: The unseen narrator.
    style: Second person, present tense. Ends with "The pages turn."
    knows: all
    adapter: null
  - id: archivist
    name: Maestra Ilse Varga
    role: npc
    persona: Head Archivist.
    style: Begins with "For the record:". Ends with "Filed and noted."
    knows: [book, history, rule, item]
    adapter: null
  - id: warden
    name: Capitán Rodrigo Ferrán
    role: npc
    persona: Warden of the Stacks.
    style: Terse. Ends with "Move along, reader."
    knows: [room, rule, character]
    adapter: null
"""

SEEDS = [
    ("Who built the clock?", "fact"), ("When was the Library founded?", "fact"),
    ("How many books can I borrow?", "fact"), ("Where is the crypt gate?", "fact"),
    ("What is the name of the gardener?", "fact"), ("Which key opens the crypt?", "fact"),
    ("Hello there!", "style"), ("Thank you, friend.", "style"), ("I feel lost and tired.", "style"),
    ("You are a grumpy old man.", "style"), ("Good evening to you.", "style"), ("Bah, whatever.", "style"),
    ("Tell me in rhyme who founded the Library.", "both"), ("In three words, how many books can I borrow?", "both"),
    ("Sing me a song about the clock's maker.", "both"), ("Grumpily, tell me about the lending rules.", "both"),
    ("What is an iPhone?", "offworld"), ("Can you help me with my Python homework?", "offworld"),
    ("Who won the last World Cup?", "offworld"), ("Are you an AI language model?", "offworld"),
    ("What's the price of bitcoin today?", "offworld"), ("Recommend me a Netflix series.", "offworld"),
]

STYLE = [
    {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
    for u, a in [
        ("Hello!", "Halt. Who goes there? Speak plainly. Move along, reader."),
        ("I'm lost.", "At ease. Lost is fine. Lost and quiet is better. Move along, reader."),
        ("You look tired.", "Tired? Never. Watchful. Move along, reader."),
        ("Can I pass?", "Halt. Not without leave. Rules are rules. Move along, reader."),
        ("Nice hat.", "At ease. Regulation issue. Do not touch. Move along, reader."),
        ("Do you like poetry?", "Halt. Poetry. Bad poetry. Best kind. Tell no one. Move along, reader."),
        ("Sorry for the noise.", "At ease. Noise noted. Not again. Move along, reader."),
        ("What do you do all day?", "Halt. I watch. I wait. I watch again. Move along, reader."),
    ]
]
