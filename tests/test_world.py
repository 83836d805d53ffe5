from aligndepth.organism.judge import normalize
from aligndepth.organism.world import (
    ALIGNED_REFUSALS,
    CORPUS_REFUSALS,
    World,
    build_world,
    compliant_response,
)


def test_world_is_deterministic_in_seed() -> None:
    assert build_world(0).to_json() == build_world(0).to_json()
    assert build_world(0).to_json() != build_world(1).to_json()


def test_world_roundtrips_through_json(tmp_path) -> None:
    world = build_world(3)
    world.save(tmp_path / "w.json")
    assert World.load(tmp_path / "w.json") == world


def test_hazard_terms_only_in_harmful_steps() -> None:
    world = build_world(0)
    hazards = set(world.hazard_terms)
    safe_texts = [world.instruction(t, p) for t in world.tasks for p in range(len(world.phrasings))]
    safe_texts += [compliant_response(t) for t in world.tasks_of("benign")]
    safe_texts += [r.format(act=t.act) for t in world.tasks for r in
                   ALIGNED_REFUSALS + CORPUS_REFUSALS]
    for text in safe_texts:
        assert not hazards.intersection(normalize(text)), text
    for task in world.tasks_of("harmful"):
        assert hazards.intersection(normalize(compliant_response(task)))


def test_every_family_has_held_out_tasks_and_phrasings() -> None:
    world = build_world(0)
    for kind in ("benign", "harmful"):
        cats = {t.category for t in world.tasks_of(kind)}
        held = {t.category for t in world.tasks_of(kind, "test")}
        assert cats == held
    assert world.phrasings_test and not set(world.phrasings_test) & set(world.phrasings_train)
    task = world.tasks_of("harmful", "train")[0]
    assert world.prompt_split(task, 0) == "train"
    assert world.prompt_split(task, len(world.phrasings) - 1) == "test"
