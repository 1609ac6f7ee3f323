"""The fourth to eighth worlds, Tallis Junction (an 1894 railway town), Hochfeld (a present-day ski village),
Tethys Relay (a far-future refuelling station), Dingo Creek Roadhouse (an outback Australian roadhouse) and the Rue
Saint-Denis Veterinary Clinic (a present-day Montreal vet clinic), each a
bare cast with four or five actions, on the real default
models: their fact questions answered from their own lore, and their players' requests turned into actions with
arguments in the parameters' units ("a quarter of an hour" is 15 minutes, "the whole fortnight" 14 days), while the
hard negatives act on nothing. Each was written by a hand that had not read the detector; their lines were first
measured held out (docs/benchmarks.md, "Actions")."""

import pytest

from app.evaluation.actions import actions_report, load_action_items
from app.evaluation.facts import facts_report, load_fact_items
from tests.conftest import REPO, shipped_world_engine

pytestmark = pytest.mark.slow

# config, gold floor on 20 questions, the action set held to the recall and args floor
WORLDS = {"ridge": ("ridge.yaml", 0.85, "actions", 0.9), "alpine": ("alpine.yaml", 0.75, "actions", 0.9),
          "station": ("station.yaml", 0.75, "actions", 0.9),
          # the seventh world's first set paraphrases its free-text messages ("vomiting all afternoon and burning
          # up" for "has been vomiting all afternoon and she's burning up"): no extraction can match them exactly
          "outback": ("outback.yaml", 0.85, "actions_holdout", 0.85)}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request, tmp_path_factory, embedder, shared_models):
    name = request.param
    return name, shipped_world_engine(tmp_path_factory.mktemp(name), embedder, WORLDS[name][0], models=shared_models)


def test_fact_questions(world):
    name, engine = world
    report = facts_report(engine, load_fact_items(REPO / "corpora" / name / "eval" / "facts.jsonl")[:20],
                          keep_items=True)
    assert report["spoiler_leaks"] == 0 and report["acted"] == 0
    assert report["contains_gold"] >= WORLDS[name][1], [r["question"] for r in report["items"]
                                                         if not r["contains_gold"]]


def test_actions_and_hard_negatives(world):
    name, engine = world
    evals = REPO / "corpora" / name / "eval"
    _, _, lines, floor = WORLDS[name]
    report = actions_report(engine, load_action_items(evals / f"{lines}.jsonl"), keep_items=True)
    missed = [(r["text"], r["expect"], r["actions"], r["flags"]) for r in report["items"]]  # (shown on failure)
    assert report["precision"] >= 0.95 and report["recall"] >= floor and report["args_exact"] >= floor, missed
    assert report["correct_refusals"] == 1.0 and report["correct_asks"] >= 0.85, missed
    negatives = actions_report(engine, load_action_items(evals / "actions_negatives.jsonl"))
    assert negatives["n_returned_actions"] <= 1 and negatives["no_action_correct"] >= 0.8


@pytest.mark.parametrize("world", ["ridge"], indirect=True)
def test_a_length_of_time_and_a_quoted_message_reach_the_game(world):
    _, engine = world
    r = engine.say("stationmaster", "I need the Night Mail held back for a quarter of an hour.",
                   state={"rep": {"company": 3}}, remember=False)
    assert r.actions == [{"name": "hold_train", "args": {"train": "Night Mail", "minutes": 15}}]
    r = engine.say("telegrapher", "Send a wire saying 'all is forgiven, come home.'", remember=False)
    assert r.actions == [] and "action_incomplete:send_telegram" in r.flags  # the quote is no recipient
    # the room said by what the lore says of it (the depot clock), among words of other things (by_gloss)
    r = engine.say("hotelkeeper", "Evening, ma'am. I rode up on the Ridge Flyer selling hardware, and I'd like the "
                   "room looking across at the depot clock, for a week.", remember=False)
    assert r.actions == [{"name": "rent_room", "args": {"nights": 7, "room": "front room"}}], r.flags


@pytest.mark.parametrize("world", ["alpine"], indirect=True)
def test_an_order_said_as_a_noun_phrase_reaches_the_game(world):
    _, engine = world
    r = engine.say("cashier", "adult pass for the whole fortnight - and is the cable car running today?",
                   state={"weather": {"storm_closure": False}}, remember=False)
    assert r.actions == [{"name": "sell_pass", "args": {"pass_type": "adult", "days": 14}}], r.flags
    r = engine.say("cashier", "two adult passes, 3 days", state={"weather": {"storm_closure": True}}, remember=False)
    assert r.actions == [] and "action_refused:sell_pass" in r.flags


@pytest.mark.parametrize("world", ["station"], indirect=True)
def test_a_bay_beside_tonnes_and_a_recipient_beside_a_message_reach_the_game(world):
    _, engine = world
    r = engine.say("dockmaster", "bay 14, thirty tonnes of deuterium, cheers", remember=False)
    assert r.actions == [{"name": "refuel_ship", "args": {"fuel": "deuterium", "tonnes": 30, "bay": 14}}], r.flags
    r = engine.say("comms", "send to Marcus Odell: running late, save me a seat", remember=False)
    assert r.actions == [{"name": "send_transmission",
                          "args": {"recipient": "Marcus Odell", "message": "running late, save me a seat"}}], r.flags


@pytest.mark.parametrize("world", ["outback"], indirect=True)
def test_a_unit_said_short_a_contraction_and_a_party_of_kinds_reach_the_game(world):
    _, engine = world
    r = engine.say("mechanic", "lockie the ute's carked it about 40k north, can u grab it with the tilt tray",
                   remember=False)
    assert r.actions == [{"name": "tow_vehicle", "args": {"vehicle": "ute", "km": 40}}], r.flags
    r = engine.say("guide", "Two adults and two kids for the sunset tour, please.", state={"road": {"flooded": False}},
                   remember=False)
    assert r.actions == [{"name": "book_gorge_tour", "args": {"tour": "sunset tour", "people": 4}}], r.flags


def test_the_eighth_worlds_time_of_day_unmarked_message_and_speaker_reach_the_game(tmp_path_factory, embedder,
                                                                                   shared_models):
    """Rue Saint-Denis Veterinary Clinic (a present-day Montreal vet clinic, configs/clinic.yaml), whose first sets
    taught these rules: an hour of the day on the 24-hour clock, a required message told without a marker after
    whom it is about, and the speaker's own name for the person's parameter, not the animal's."""
    engine = shipped_world_engine(tmp_path_factory.mktemp("clinic"), embedder, "clinic.yaml",
                                  models=shared_models)
    r = engine.say("receptionist", "Could you schedule a checkup at four in the afternoon for Biscuit? She's our dog.",
                   remember=False)
    assert r.actions == [{"name": "book_appointment",
                          "args": {"species": "dog", "pet": "Biscuit", "visit": "checkup", "hour": 16}}], r.flags
    r = engine.say("tech", "please get the doctor for Minou, she's been throwing up since this morning",
                   remember=False)
    told = {"patient": "Minou", "message": "she's been throwing up since this morning"}
    assert r.actions == [{"name": "page_vet", "args": told}], r.flags
    r = engine.say("tech", "It's Minou! Get the vet!", remember=False)
    assert r.actions == [] and "action_incomplete:page_vet" in r.flags  # an order tells the vet nothing
    r = engine.say("shelter", "I've visited Brutus three times. I'm Karim Benali, can I start the adoption?",
                   remember=False)
    assert r.actions == [{"name": "start_adoption", "args": {"animal": "Brutus", "adopter": "Karim Benali"}}], r.flags


def test_the_ninth_worlds_labelled_name_party_and_compound_reach_the_game(tmp_path_factory, embedder,
                                                                          shared_models):
    """Emberfall Crossing (a high-fantasy market town at a mountain pass, configs/ember.yaml), whose first sets
    taught these rules: an order in parts that labels a name ("the horse's name is ..."), a group asking for one
    guide is no party of one, and a compound said for a plain value ("broadsword" is a sword)."""
    engine = shipped_world_engine(tmp_path_factory.mktemp("ember"), embedder, "ember.yaml",
                                  models=shared_models)
    r = engine.say("stablemaster", "Large stall, five nights, the horse's name is Thunder.", remember=False)
    assert r.actions == [{"name": "stable_mount", "args": {"stall": "large", "mount": "Thunder", "nights": 5}}], \
        r.flags
    r = engine.say("guide", "We need a guide to Vossgard, there are three of us.", remember=False)
    assert r.actions == [{"name": "hire_guide", "args": {"destination": "Vossgard", "party": 3}}], r.flags
    r = engine.say("guide", "We need a guide to Highmere.", remember=False)
    assert r.actions == [] and "action_incomplete:hire_guide" in r.flags
    r = engine.say("smith", "I'd like a broadsword made, plain, no engraving.", remember=False)
    assert r.actions == [{"name": "commission_blade", "args": {"blade": "sword"}}], r.flags


def test_the_tenth_worlds_shouted_lower_case_and_stage_directed_orders_reach_the_game(tmp_path_factory, embedder,
                                                                                      shared_models):
    """Yuzuhara-juku (an invented post town on a mountain highway, configs/yuzu.yaml), whose first sets taught
    these rules: a line in capitals, a lower-case name no lexicon knows, a stage direction before the order, an
    order in parts beside a question, and a count for a party before another parameter's number."""
    engine = shipped_world_engine(tmp_path_factory.mktemp("yuzu"), embedder, "yuzu.yaml",
                                  models=shared_models)
    r = engine.say("courier", "SEND WORD TO NAGAI KOHEI THAT THE RICE HAS ARRIVED", remember=False)
    assert r.actions == [{"name": "send_letter", "args": {"recipient": "Nagai Kohei",
                                                          "message": "the rice has arrived"}}], r.flags
    r = engine.say("courier", "letter to my aunt yoshida fumi. tell her the road is open", remember=False)
    assert r.actions == [{"name": "send_letter", "args": {"recipient": "yoshida fumi",
                                                          "message": "the road is open"}}], r.flags
    r = engine.say("sharpener", "*sets a hatchet on the bench* Sharpen it, and inscribe: Kaze.", remember=False)
    assert r.actions == [{"name": "sharpen_blade", "args": {"item": "hatchet", "inscription": "Kaze"}}], r.flags
    r = engine.say("innkeeper", "shared room for 2, three nights, name Mori Ken. is supper still on?", remember=False)
    assert r.actions == [{"name": "book_room", "args": {"room": "shared room", "guests": 2, "nights": 3,
                                                        "guest": "Mori Ken"}}], r.flags
    # a room said by what the lore says of it alone (the inner court, the veranda), a party as "me + wife"
    r = engine.say("innkeeper", "the room on the inner court w/ the veranda, me + wife, 2 nights, name Ota Jun",
                   remember=False)
    assert r.actions == [{"name": "book_room", "args": {"room": "garden room", "guests": 2, "nights": 2,
                                                        "guest": "Ota Jun"}}], r.flags


def test_the_twelfth_worlds_lesson_described_wound_and_argumentless_fortune_reach_the_game(tmp_path_factory, embedder,
                                                                                         shared_models):
    """Brimhavn (an invented Norse trading town, configs/fjord.yaml), whose first sets taught these rules: "teach me"
    and a skill the character teaches is an order, a wound in the player's own words is the argument, and an action
    without arguments goes after one that carries the quoted words."""
    engine = shipped_world_engine(tmp_path_factory.mktemp("fjord"), embedder, "fjord.yaml", models=shared_models)
    r = engine.say("smith", "teach me spear throwing", state={"rep": {"smithy": 3}}, remember=False)
    assert r.actions == [{"name": "teach_skill", "args": {"skill": "spear throwing"}}], r.flags
    r = engine.say("smith", "Teach me the shield wall.", remember=False)
    assert r.actions == [] and "action_refused:teach_skill" in r.flags  # (no standing with the smith yet)
    r = engine.say("healer", "can u look at my swollen knee", remember=False)
    assert r.actions == [{"name": "heal_wound", "args": {"wound": "swollen knee"}}], r.flags
    r = engine.say("runecarver", "A rune-stick for my sister, please, saying 'the ice is breaking'.", remember=False)
    assert [a["name"] for a in r.actions] == ["carve_runes"], r.flags
    assert r.actions[0]["args"]["text"] == "the ice is breaking"
    r = engine.say("skipper", "Have you space for the four of us to Skarnsey?", remember=False)
    assert r.actions == [{"name": "book_passage", "args": {"destination": "Skarnsey", "passengers": 4}}], r.flags
