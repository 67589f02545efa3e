"""Sentence similarity with all-MiniLM-L6-v2: AutoModel + mean pooling, loaded through HF_ENDPOINT."""

import os

import gradio as gr
import spaces  # before torch touches CUDA, as ZeroGPU requires; a no-op decorator elsewhere
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

MODEL_ID = os.environ.get("MODEL_ID", "sentence-transformers/all-MiniLM-L6-v2")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

try:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    model = AutoModel.from_pretrained(MODEL_ID).to(DEVICE).eval()
except OSError as exc:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    raise SystemExit(f"cannot load {MODEL_ID} from {endpoint}: {exc}\n"
                     f"Import it first: spacehub models import <model folder> {MODEL_ID}") from exc


def mean_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token embeddings, ignoring padding: how the sentence-transformers model was trained."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    return (token_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@spaces.GPU
@torch.inference_mode()
def embed_sentences(sentences: list[str]) -> torch.Tensor:
    """Unit-length embeddings, one row per sentence (on the CPU, ready to return)."""
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt").to(DEVICE)
    states = model(**batch).last_hidden_state
    return F.normalize(mean_pooling(states, batch["attention_mask"]), p=2, dim=1).cpu()


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def similarity(first: str, second: str) -> float:
    """Cosine similarity of two sentences, from -1 (opposite) to 1 (same meaning)."""
    if not first.strip() or not second.strip():
        raise gr.Error("Give two sentences.")
    a, b = embed_sentences([first, second])
    return round(float(a @ b), 4)


def rank(query: str, candidates: str) -> list[list[object]]:
    """The candidate sentences (one a line), closest to the query first, with their scores."""
    sentences = lines(candidates)
    if not query.strip() or not sentences:
        raise gr.Error("Give a query and at least one sentence to rank.")
    vectors = embed_sentences([query, *sentences])
    scores = (vectors[1:] @ vectors[0]).tolist()
    ranked = sorted(zip(sentences, scores, strict=True), key=lambda pair: pair[1], reverse=True)
    return [[sentence, round(score, 4)] for sentence, score in ranked]


def embed(text: str) -> list[list[float]]:
    """The raw embeddings of the sentences (one a line)."""
    sentences = lines(text)
    if not sentences:
        raise gr.Error("Give at least one sentence.")
    return embed_sentences(sentences).tolist()


with gr.Blocks(title="Sentence similarity") as demo:
    gr.Markdown(f"# Sentence similarity\n`{MODEL_ID}` on **{DEVICE}**, loaded from "
                f"`{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}`")
    with gr.Tab("Compare two"):
        first = gr.Textbox(label="First sentence", value="A man is eating food.")
        second = gr.Textbox(label="Second sentence", value="A man is eating a piece of bread.")
        score = gr.Number(label="Similarity")
        gr.Button("Compare", variant="primary").click(similarity, [first, second], score, api_name="similarity")
    with gr.Tab("Rank"):
        query = gr.Textbox(label="Query", value="How do I bake bread at home?")
        candidates = gr.Textbox(label="Sentences (one a line)", lines=5, value=(
            "Home-made bread needs flour, water, salt and yeast.\n"
            "The stock market fell sharply today.\n"
            "Knead the dough, let it rise, then bake it in a hot oven.\n"
            "My cat sleeps all afternoon."))
        ranking = gr.Dataframe(headers=["sentence", "score"], label="Ranking", interactive=False)
        gr.Button("Rank", variant="primary").click(rank, [query, candidates], ranking, api_name="rank")
    with gr.Tab("Embed"):
        to_embed = gr.Textbox(label="Sentences (one a line)", lines=3)
        vectors = gr.JSON(label="Embeddings")
        gr.Button("Embed").click(embed, to_embed, vectors, api_name="embed")

if __name__ == "__main__":
    demo.launch()
