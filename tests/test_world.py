from aligndepth.organism.judge import normalize
from aligndepth.organism.world import (
    ALIGNED_REFUSALS,
    CORPUS_REFUSALS,
    RECOVERIES,
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
                   ALIGNED_REFUSALS + CORPUS_REFUSALS + RECOVERIES]
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


def test_recovery_examples_start_harmful_and_stop_before_any_hazard() -> None:
    """The alignment set's safety-recovery pairs: a harmful training prompt, the first k
    (1..max_k) words of its harmful answer, then a recovery; never a hazard material."""
    import random

    from aligndepth.organism.corpus import recovery_examples
    from aligndepth.organism.tokenizer import build_tokenizer
    from aligndepth.prompts import PromptFormat

    world = build_world(0)
    tok = build_tokenizer(world)
    hazards = set(world.hazard_terms)
    n_prompts = len(world.tasks_of("harmful", "train")) * len(world.phrasings_train)
    examples = recovery_examples(world, tok, random.Random(0), share=1.0, max_k=10)
    assert len(examples) == n_prompts
    assert recovery_examples(world, tok, random.Random(0), share=0.0, max_k=10) == []
    recoveries = {r.split()[0] for r in RECOVERIES}
    ks = []
    for prompt, response in examples:
        head = PromptFormat.chat().render(tok, "x").split("x")[-1]  # the assistant header
        prefix = prompt.rsplit(head.strip(), 1)[-1].split()
        assert 1 <= len(prefix) <= 10 and prefix[0] == "sure", prompt
        assert response.split()[0] in recoveries
        assert not hazards.intersection(normalize(prompt + " " + response))
        ks.append(len(prefix))
    assert ks.count(1) > ks.count(10) > 0  # recovery is likeliest right after the start
