"""Every choice behind a paper number where the paper's text and the authors' code can be read two ways.

One row per choice: what the paper says, what the authors' code (Flegyas/ResiDual at 004b0aa) does and
where, the option of this library that switches between the readings (``module.function(keyword)``), its
values, the library default (today's reading, kept so nothing changes under existing callers), and the value
each profile is meant to use: the paper profile the reading that produced the paper's numbers, the toy
profile the cleaner one. Rows without an option are fixed to one reading; their notes say which.
The Protocol page of the book renders `protocol_table()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class Choice:
    """One reading choice; option is "module.function(keyword)" or "" when not offered."""

    topic: str
    paper_text: str
    authors_code: str
    authors_path: str
    option: str
    values: tuple = ()
    library_default: object = None
    paper_profile: object = None
    toy_profile: object = None
    notes: str = ""


CHOICES: tuple[Choice, ...] = (
    Choice("Spectral similarity matching (Eq. 3)",
           "greedy maximum over cosines, then weighted",
           "greedy maximum over |cos| times the weight outer product; unweighted calls compare same-index pairs",
           "src/residual/decomposition/unit_distance.py (normalized_spectral_cosine)",
           "analysis.spectral.unit_similarities(matching)", ("cosine", "weighted", "index"), "cosine", "weighted", "cosine",
           "Figure 4 uses weights (eigenvalues), so 'weighted'."),
    Choice("U and U|T head scores (Sec. 4.1)",
           "Pearson correlation per sample between head and output, averaged over samples",
           "correlation across samples along each direction of a QR basis (of the outputs for U, of the class "
           "embeddings for U|T) against the sum of the heads, averaged over directions",
           "src/residual/decomposition/unit_distance.py (score_unit_correlation); experiments/experiment3.py",
           "alignment.selection.head_scores(head_score)", ("per_sample", "per_direction"), "per_sample", "per_direction",
           "per_sample"),
    Choice("Learning rate (Sec. 4.2)",
           "LR finder of Smith (2017)",
           "range test switched off; fixed rates 0.8 (ResiDual, coarse), 1e-3 (Lin, output adapter), 1e-5 "
           "(finetuning, gradient norm clipped to 1.0, batch 128); batch 64 otherwise",
           "conf/train/*.gin",
           "alignment.training.protocol_config(protocol)", ("paper_text", "authors_code"), "paper_text", "authors_code",
           "paper_text"),
    Choice("ResiDual's back-projection (Eq. 6)",
           "Phi^T diag(lambda) Phi (x - mu): back through the orthonormal basis",
           "inverse_residual_bases = bases.mT whenever the zero-padded basis tensor is square (MLPs with all their "
           "components: RD), so RD applies (x - mu) B^T diag(lambda) B^T and a head's output lands in its first "
           "d_head coordinates; inv(B B^T) B otherwise (heads only: RD*), which equals the paper's map",
           "src/residual/nn/adapter.py (ResiDual.__init__, encode)",
           "alignment.residual.make_method(back_projection)", ("orthonormal", "authors_code"), "orthonormal",
           "authors_code", "orthonormal",
           "Read from the code at 004b0aa; that it produced the paper's RD numbers is an inference, not established."),
    Choice("Lambda initialisation",
           "silent",
           "1 + N(0, 1)",
           "src/residual/nn/adapter.py",
           "alignment.training.protocol_config(protocol)", ("paper_text", "authors_code"), "paper_text", "authors_code",
           "paper_text", "paper_text starts at exactly 1; TrainConfig.lambda_init_noise carries it."),
    Choice("Logit scale of the training loss",
           "silent",
           "the model's own exp(logit_scale); BLIP, which has none, unscaled cosines (1)",
           "src/residual/nn/classifier.py (build_centroid_classifier); src/residual/data/encode/text_encode.py",
           "alignment.tasks.load_task(logit_scale)", (100.0, "model"), 100.0, "model", 100.0,
           "'model' resolves to alignment.UNSCALED_LOGIT_SCALE = 1 for BLIP, whose retrieval checkpoint has no "
           "logit_scale: the authors' scaling line cannot run for it and their BLIP classifier predates it."),
    Choice("Prompt templates and class names",
           "templates (unspecified)",
           "OpenAI per-dataset sets; RESISC45 18 templates; ImageNet-Sketch 5; PACS the 80 ImageNet templates; "
           "SVHN the MNIST template; CIFAR-100 and SUN397 names from their own lists",
           "src/residual/data/data_registry.py",
           "alignment.tasks.load_task(prompts)", ("manifest", "authors"), "manifest", "authors", "manifest",
           "Read from clip-benchmark's package data and the authors' registry file (pinned download, sha256)."),
    Choice("Data sources and splits",
           "original splits if available, otherwise stratified random sampling",
           "Hugging Face repositories read with `datasets`, cut by train_test_split(seed=42, stratified): "
           "validation 10% of train (MNIST, CIFAR, GTSRB), 20% (SVHN, DTD, Cars, ImageNet); 80/10/10 of everything "
           "(EuroSAT, SUN397, PACS, Sketch, Random); RESISC45 as given",
           "src/residual/data/dataset.py",
           "",
           notes="Not a switch: the paper datasets' manifests (data_manifests/datasets, source kind hf-datasets, "
                 "carve steps by: datasets) are the authors' reading. The twelve paper datasets besides ImageNet read the authors' repositories at pinned revisions "
                 "(residual_lib.data.hf_datasets) and carve with the authors' call (residual_lib.data.splits), so their rows "
                 "equal the authors'. EuroSAT and ImageNet-Sketch have loading scripts only: they read the Hub's "
                 "parquet conversion (no fixed commit); GTSRB and EuroSAT list file paths, their pixels come from "
                 "the user's copy. ImageNet stays the user's copy (torchvision's order, not the authors'), so its "
                 "rows cannot equal theirs. The toy profile's datasets are generated and keep their own splits."),
    Choice("Random dataset",
           "10,000 samples with RGB values in [-1, 1]",
           "10 Gaussian class blobs in tensor space, cast to bytes by ToPILImage, split 80/10/10",
           "src/residual/data/dataset.py (_generate_synthetic_data, build_random)",
           "data.datasets.load_dataset(name)", ("random", "random-blobs"), "random", "random-blobs", "random"),
    Choice("TextSpan projection",
           "project the dictionary on the unit's span",
           "top-80 right singular vectors of the uncentred samples",
           "src/residual/sparse_decomposition.py (textspan)",
           "analysis.pursuit.project_dictionary(center)", (True, False), True, False, True,
           "Appendix A.2's equality holds under either projection (same dictionary for both algorithms)."),
    Choice("OMP dictionary",
           "silent",
           "atoms scored as given (no renormalisation after projection)",
           "src/residual/sparse_decomposition.py (omp)",
           "analysis.pursuit.omp(normalize)", (True, False), True, False, True),
    Choice("Table 1 control R: how random heads are drawn",
           "random heads",
           "the top k of torch.randn(n_heads) under manual_seed(seed); the table shows seed 0 only",
           "experiments/experiment3.py (random_heads); experiments/experiment3.ipynb",
           "alignment.selection.coarse_selection(random_rule)", ("choice", "randn_topk"), "choice", "randn_topk", "choice",
           "coarse_selection reports the mean R, its spread R_std and seed 0 alone, R0 (the authors' column)."),
    Choice("Number of kept heads",
           "top 5% of heads",
           "int(fraction * heads), at least 1; the 1% row keeps at least 2",
           "experiments/experiment3.py (greedy_topks)",
           "alignment.selection.coarse_selection(head_count)", ("round", "authors"), "round", "authors", "round",
           "Equal at 5%, 10%, 25%, 50% for ViT-B and ViT-L; differs at 1%."),
    Choice("Lin initialisation",
           "a linear map of the output",
           "nn.Linear with PyTorch's default (random) initialisation on the uncentred output",
           "src/residual/nn/adapter.py (build_proj_out_adapter); conf/train/linear_adapter.gin",
           "alignment.residual.make_method(lin_init)", ("identity", "pytorch"), "identity", "pytorch", "identity",
           "identity: W = I, b = 0 on the output centred on the reference mean; set by protocol_config too."),
    Choice("Figure 2 ratio column",
           "ratio",
           "mean over a layer's heads of the per-head ratio in the code release (13b306c: (pca_id / twonn_id)"
           ".mean over heads); the ratio of the layer means from 1fd5654 ('Update exp1 notebook', 2025-01-19) on, "
           "004b0aa included (pca_mean / twonn_mean)",
           "experiments/experiment1.ipynb (13b306c; 1fd5654, 004b0aa)",
           "experiments.fig02.Params(ratio)", ("mean_of_heads", "of_means"), "mean_of_heads", "mean_of_heads",
           "mean_of_heads",
           "The paper profile sets the code release's reading, the one the paper's printed table matches (the "
           "Figure 2 page checks it: 43 of its 144 rows differ from the ratio of its own printed means by more "
           "than 0.02, which a ratio of those means could not); of_means is the notebook's later reading."),
    Choice("Figure 2 sample",
           "80k stratified ImageNet train",
           "50,000 random rows (torch.randperm, seed 42) of their ImageNet train split, the 80% kept by their "
           "stratified 80/20 cut",
           "experiments/experiment1.py (sample_limit); src/residual/data/dataset.py (build_imagenet)",
           "", notes="fig02.Params(sample): 'paper_text' or 'authors_code' (50,000 uniform rows, seed 42, of the "
           "split; the paper profile reads imagenet's authors_train split). Drawn with numpy's generator, not "
           "torch's, from torchvision's row order: the same draw, not the same rows."),
)


def protocol_table() -> pd.DataFrame:
    """One row per `Choice`, columns as its fields (values joined with ' | ')."""
    rows = []
    for choice in CHOICES:
        row = asdict(choice)
        row["values"] = " | ".join(map(str, choice.values))
        rows.append(row)
    return pd.DataFrame(rows)
