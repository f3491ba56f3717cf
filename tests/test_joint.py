"""VideoBERT's joint model (minivb.joint, notebook 10 §2–§5): the sequence, H₀, the masks, the three objectives,
and reading the model with masks — checked against PyTorch's own losses and against computations by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minivb.joint import (
    JointBERT,
    JointBERTConfig,
    JointExamples,
    JointLoss,
    alignment_scores,
    caption,
    evaluate_joint,
    joint_losses,
    mask_span,
    masked_log_probs,
    pack,
    phrase_scores,
    video_half,
)
from minivb.language import CLS, MASK, PAD, SEP, TO_VIDEO, UNK, JointVocabulary, WordTokenizer
from minivb.pretraining import IGNORE_INDEX, collate

TEXTS = ["the red ball slides to the right", "a big box grows", "the ball falls down quickly", "a box opens up"]
V = 10  # visual words


def setup(seed: int = 0, text_len: int = 8, video_len: int = 5):
    voc = JointVocabulary(WordTokenizer.build(TEXTS).words, V)
    config = JointBERTConfig(len(voc), text_len, video_len, dim=16, depth=1, num_heads=2)
    torch.manual_seed(seed)
    return voc, config, JointBERT(config).eval()


def videos(n: int, video_len: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(V, (n, video_len), generator=torch.Generator().manual_seed(seed))


def test_pack_lays_out_cls_text_separator_video_sep():
    voc, c, _ = setup()
    text, video = voc.encode_text("a big box grows"), videos(1)[0]
    ids = pack(text, voc.encode_video(video), c)
    assert ids.shape == (c.seq_len,) == (8 + 5 + 3,)
    assert ids[0] == CLS and ids[1:5].tolist() == text and (ids[5:9] == PAD).all()
    assert ids[c.separator] == TO_VIDEO == ids[9] and ids[-1] == SEP
    assert (ids[c.video_positions()] - voc.visual_offset).tolist() == video.tolist()
    assert (pack(text, None, c)[c.video_positions()] == PAD).all()
    assert c.segments().tolist() == [0] * 10 + [1] * 6  # [CLS] text [>] | video [SEP]
    with pytest.raises(ValueError, match="9 words; the model's text slots hold 8"):
        pack(list(range(6, 15)), None, c)
    short = pack(text, torch.tensor([voc.visual_offset]), c)  # a shorter visual sentence: [PAD] after it
    assert short[c.separator + 1] == voc.visual_offset and (short[c.separator + 2 : -1] == PAD).all()
    with pytest.raises(ValueError, match="must be ≤ 5 visual words"):
        pack(text, torch.full((6,), voc.visual_offset), c)


def test_initial_state_is_the_sum_of_three_embeddings():
    voc, c, model = setup()
    ids = torch.stack([pack(voc.encode_text(t), voc.encode_video(v), c) for t, v in zip(TEXTS, videos(4))])
    seg = torch.tensor([0] * (c.separator + 1) + [1] * (c.seq_len - c.separator - 1))
    by_hand = model.token_embed.weight[ids] + model.pos_embed[None] + model.segment_embed.weight[seg][None]
    torch.testing.assert_close(model.initial_state(ids), by_hand)
    logits, align = model(ids)
    assert logits.shape == (4, c.seq_len, len(voc)) and align.shape == (4,)
    with pytest.raises(ValueError, match=f"shaped \\(B, {c.seq_len}\\)"):
        model(ids[:, :-1])


def test_padding_is_never_attended():
    """Whatever [PAD]'s embedding is, the real tokens' states are the same: the keys of [PAD] are masked out."""
    voc, c, model = setup()
    ids = torch.stack([pack(voc.encode_text(t), None, c) for t in TEXTS])
    real = ids != PAD
    before = model.hidden_states(ids)[0][real]
    with torch.no_grad():
        model.token_embed.weight[PAD].normal_()
    torch.testing.assert_close(model.hidden_states(ids)[0][real], before)


def test_mask_span_masks_within_one_modality():
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(20, 40)
    n_mask = n_chosen = 0
    for _ in range(300):
        inputs, targets = mask_span(ids, 20, 40, generator=g)
        chosen = targets != IGNORE_INDEX
        assert chosen.any() and (targets[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
        assert ((inputs == MASK) | ((inputs >= 20) & (inputs < 40))).all()  # a random word is of the same modality
        n_mask, n_chosen = n_mask + int((inputs == MASK).sum()), n_chosen + int(chosen.sum())
    assert n_chosen == pytest.approx(0.15 * 20 * 300, rel=0.05) and n_mask / n_chosen == pytest.approx(0.8, abs=0.04)
    empty = mask_span(torch.zeros(0, dtype=torch.long), 20, 40, generator=g)
    assert empty[0].numel() == empty[1].numel() == 0


def test_training_pairs_misalign_half_and_mask_both_kinds_alike():
    """Every pair is masked, aligned or not: when only aligned pairs were masked, the masks alone gave the pairs
    away (alignment 100% on validation while text-to-video search stayed at chance)."""
    voc, c, _ = setup()
    texts = [voc.encode_text(t) for t in TEXTS] * 50
    data = JointExamples(texts, videos(len(texts)), voc, c, seed=3)
    labels, masked = [], {0: 0, 1: 0}
    for i in range(len(data)):
        inputs, targets = data[(0, i)]
        y = int(targets[0])
        labels.append(y)
        masked[y] += int((inputs == MASK).any())
        if y == 0:  # another clip's narration, and no cloze target
            assert (targets[1:] == IGNORE_INDEX).all()
    share = np.mean(labels)
    assert 0.4 < share < 0.6
    assert masked[1] / sum(labels) == pytest.approx(masked[0] / (len(labels) - sum(labels)), abs=0.1)
    assert torch.equal(data[(2, 7)][0], data[(2, 7)][0]) and not torch.equal(data[(2, 7)][0], data[(3, 7)][0])
    val = JointExamples(texts, videos(len(texts)), voc, c, seed=3, train=False)
    val.set_epoch(5)
    assert torch.equal(val[7][0], val[(0, 7)][0])  # validation: always epoch 0's draws
    prior = JointExamples(texts, None, voc, c)
    inputs, targets = prior[0]
    assert targets[0] == IGNORE_INDEX and (inputs[c.video_positions()] == PAD).all()


def test_an_unknown_word_is_never_a_target():
    voc, c, _ = setup()
    data = JointExamples([[UNK] * 6] * 40, videos(40), voc, c, misaligned=0.0)
    assert all((data[i][1][c.text_positions()] == IGNORE_INDEX).all() for i in range(40))


def test_the_three_losses_match_pytorchs():
    voc, c, model = setup()
    data = JointExamples([voc.encode_text(t) for t in TEXTS] * 4, videos(16), voc, c, seed=1)
    inputs, targets, _ = collate([data[i] for i in range(16)])
    outputs = model(inputs)
    logits, align = outputs
    got = joint_losses(outputs, targets, c)

    def cloze(lo: int, hi: int) -> torch.Tensor:
        t = targets[:, lo:hi]
        keep = t != IGNORE_INDEX
        return F.cross_entropy(logits[:, lo:hi][keep], t[keep])

    torch.testing.assert_close(got["text"], cloze(1, 1 + c.text_len))
    torch.testing.assert_close(got["video"], cloze(c.separator + 1, c.separator + 1 + c.video_len))
    y = targets[:, 0].float()
    p = torch.sigmoid(align)
    torch.testing.assert_close(got["align"], -(y * p.log() + (1 - y) * (1 - p).log()).mean())
    torch.testing.assert_close(JointLoss(c)(outputs, targets), got["text"] + got["video"] + got["align"])
    none = torch.full_like(targets, IGNORE_INDEX)
    assert all(float(v.detach()) == 0 for v in joint_losses(outputs, none, c).values())  # nothing to score: 0, not NaN


def test_evaluate_joint_counts_each_objective_on_its_own_items():
    voc, c, model = setup()
    data = JointExamples([voc.encode_text(t) for t in TEXTS] * 4, videos(16), voc, c, train=False)
    loader = torch.utils.data.DataLoader(data, batch_size=5, collate_fn=collate)
    got = evaluate_joint(model, loader)
    inputs, targets, _ = collate([data[i] for i in range(16)])
    logits, align = model(inputs)
    keep = targets[:, 1 : 1 + c.text_len] != IGNORE_INDEX
    right = logits[:, 1 : 1 + c.text_len].argmax(-1)[keep] == targets[:, 1 : 1 + c.text_len][keep]
    assert got["text_top1"] == pytest.approx(float(right.float().mean()))
    assert got["align_accuracy"] == pytest.approx(float(((align > 0).long() == targets[:, 0]).float().mean()))
    prior = JointExamples([voc.encode_text(t) for t in TEXTS], None, voc, c, train=False)
    out = evaluate_joint(model, torch.utils.data.DataLoader(prior, batch_size=4, collate_fn=collate))
    assert out["video_top1"] is None and out["align_accuracy"] is None


def test_phrase_scores_are_mean_log_probabilities_at_the_masks():
    voc, c, model = setup()
    vids = videos(3)
    phrases = ["slides to the right", "grows", "falls down"]
    got = phrase_scores(model, voc, "the red", phrases, vids)
    for j, phrase in enumerate(phrases):
        ids = voc.encode_text(phrase)
        k = len(ids)
        text = voc.encode_text("the red") + [MASK] * k
        rows = torch.stack([pack(text, v, c) for v in voc.encode_video(vids)])
        logp = model(rows)[0].log_softmax(-1)[:, 3 : 3 + k]  # the masks follow [CLS] the red
        torch.testing.assert_close(got[:, j], logp[:, torch.arange(k), torch.tensor(ids)].mean(1))
    alone = masked_log_probs(model, voc, "the [MASK] box", None)
    assert alone.shape == (1, 1, len(voc))
    torch.testing.assert_close(alone.exp().sum(-1), torch.ones(1, 1))


def test_alignment_scores_and_captions():
    voc, c, model = setup()
    vids = videos(3)
    scores = alignment_scores(model, voc, TEXTS[:2], vids, batch=4)
    assert scores.shape == (2, 3)
    one = model(pack(voc.encode_text(TEXTS[1]), voc.encode_video(vids[2]), c)[None])[1]
    torch.testing.assert_close(scores[1, 2], one[0])
    said = caption(model, voc, vids, 4)
    assert len(said) == 3 and all(len(s.split()) == 4 and set(s.split()) <= set(voc.words) for s in said)
    assert caption(model, voc, vids, 4) == said


def test_video_half_starts_from_the_joint_models_embeddings():
    voc, c, model = setup()
    words = video_half(model, voc)
    vids = videos(2)
    ids = torch.stack([pack(voc.encode_text(TEXTS[0]), v, c) for v in voc.encode_video(vids)])
    joint_h0 = model.initial_state(ids)
    mine = words.initial_state(vids)  # (2, 1 + T, dim): [CLS] then the video
    torch.testing.assert_close(mine[:, 1:], joint_h0[:, c.video_positions()])
    torch.testing.assert_close(mine[:, 0], joint_h0[:, 0])
    masked = words.word_embed.weight[V]  # WordBERT's [MASK] row
    torch.testing.assert_close(masked, model.token_embed.weight[MASK] + model.segment_embed.weight[1])
    assert all(torch.equal(a, b) for a, b in zip(words.transformer.parameters(), model.transformer.parameters()))


def test_a_random_stride_subsamples_the_visual_sentence_in_training_only():
    """The paper's trick against pace: every s-th visual word, s in 1 … max_stride, from an offset below s."""
    voc, c, _ = setup(video_len=6)
    video = torch.arange(6)[None].repeat(200, 1)  # visual words 0 … 5 in order
    data = JointExamples([voc.encode_text(TEXTS[0])] * 200, video, voc, c, misaligned=0.0, max_stride=3)
    seen = set()
    for i in range(200):
        inputs, targets = (x[c.video_positions()] for x in data[i])
        words = torch.where(targets != IGNORE_INDEX, targets, inputs)  # the sentence before masking
        kept = words[words != PAD] - voc.visual_offset
        assert (words[len(kept) :] == PAD).all()  # the slots left over are padding
        steps = set(torch.diff(kept).tolist())
        assert len(steps) <= 1 and steps <= {1, 2, 3}  # one pace per sentence
        seen.add((len(kept), int(kept[0])))
    assert {n for n, _ in seen} >= {6, 3, 2} and len(seen) > 4  # every stride, several offsets
    val = JointExamples([voc.encode_text(TEXTS[0])] * 4, video[:4], voc, c, train=False, max_stride=3)
    assert all((val[i][0][c.video_positions()] != PAD).all() for i in range(4))  # validation: the whole sentence


def test_the_validation_loss_is_the_sets_not_a_mean_of_batches():
    """evaluate_joint's loss weighted each batch's means by its pairs: the same model and pairs gave 3.24 at batch
    size 1 and 8.60 at 5 (a batch of one misaligned pair has no cloze target). Now it is the three means over the
    whole set, whatever the batches."""
    voc, c, model = setup()
    data = JointExamples([voc.encode_text(t) for t in TEXTS] * 4, videos(16), voc, c, train=False)
    losses = [
        evaluate_joint(model, torch.utils.data.DataLoader(data, batch_size=b, collate_fn=collate))["loss"]
        for b in (1, 5, 16)
    ]
    inputs, targets, _ = collate([data[i] for i in range(16)])
    with torch.no_grad():
        whole = float(sum(joint_losses(model(inputs), targets, c).values()))
    assert losses == pytest.approx([whole] * 3)


def test_a_stride_longer_than_the_visual_sentence_and_empty_inputs_are_refused_or_answered():
    voc, c, model = setup(video_len=5)
    with pytest.raises(ValueError, match="at most the visual sentence's 5 words, got 6"):  # offsets past the end
        JointExamples([voc.encode_text(TEXTS[0])] * 2, videos(2), voc, c, max_stride=6)
    none = videos(0)
    assert masked_log_probs(model, voc, "the [MASK]", none).shape == (0, 1, len(voc))
    assert caption(model, voc, none, 3) == [] and alignment_scores(model, voc, TEXTS[:2], none).shape == (2, 0)
    with pytest.raises(ValueError, match="every phrase needs a word"):
        phrase_scores(model, voc, "the red", ["grows", " "], videos(2))
