"""The standard recipe users run today: transformers Seq2SeqTrainer + peft LoRA r=32 on q_proj/v_proj.

Mirrors peft's Whisper example and the Hugging Face fine-tuning blog: log-mel features per
utterance, a padding collator, labels with -100, the encoder run on every step. Trains for a
fixed number of epochs, then scores dev WER with dama-asr's evaluator (the same scorer for both).
Prints one JSON line with samples/s, wall-clock, peak RSS and dev WER.
`--targets decoder` restricts the LoRA to the decoder's q_proj/v_proj (self- and cross-attention), a
variant that isolates how much of the recipe's dev WER comes from adapting the encoder.

python benchmarks/reference_recipe/hf_recipe.py --model whisper-base --train T.jsonl --dev D.jsonl --epochs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.data.audio import load_audio
from dama_asr.data.manifest import read_manifest
from dama_asr.evaluate import evaluate_items
from dama_asr.inference.decoding import DecodingOptions

# peft matches a list by module-name suffix and a string as a full-name regex.
TARGETS = {
    "encoder-decoder": ["q_proj", "v_proj"],
    "decoder": r".*decoder\.layers\.\d+\.(self_attn|encoder_attn)\.(q_proj|v_proj)",
}


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, items, processor):
        self.items, self.processor = items, processor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        audio = load_audio(item.audio)
        features = self.processor.feature_extractor(audio, sampling_rate=16000).input_features[0]
        tok = self.processor.tokenizer
        tok.set_prefix_tokens(language=item.language, task="transcribe")
        return {"input_features": features, "labels": tok(item.text).input_ids}


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    processor: object
    decoder_start_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        inputs = [{"input_features": f["input_features"]} for f in features]
        batch = self.processor.feature_extractor.pad(inputs, return_tensors="pt")
        labels_batch = self.processor.tokenizer.pad(
            [{"input_ids": f["labels"]} for f in features], return_tensors="pt"
        )
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]  # the model prepends <|startoftranscript|> itself
        batch["labels"] = labels
        return batch


class Timer(TrainerCallback):
    def __init__(self):
        self.epoch_ends: list[float] = []
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_ends.append(time.perf_counter() - self.start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-dev", type=int, default=0)
    p.add_argument("--out", default="runs/reference_recipe")
    p.add_argument(
        "--targets", choices=sorted(TARGETS), default="encoder-decoder",
        help="where the q_proj/v_proj LoRA goes: peft's example (encoder-decoder) or the decoder only",
    )  # fmt: skip
    p.add_argument(
        "--bf16", action="store_true", help="Seq2SeqTrainingArguments(bf16=True), as a user would try"
    )
    p.add_argument("--skip-eval", action="store_true", help="train only (speed benchmarks)")
    args = p.parse_args()

    backbone = load_backbone(args.model, precision="bf16" if args.bf16 else "no")
    model = get_peft_model(
        backbone.model,
        LoraConfig(r=32, lora_alpha=64, target_modules=TARGETS[args.targets], lora_dropout=0.05, bias="none"),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_items = read_manifest(args.train)
    collator = DataCollatorSpeechSeq2SeqWithPadding(backbone.processor, model.config.decoder_start_token_id)
    training_args = Seq2SeqTrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=10,
        num_train_epochs=args.epochs,
        save_strategy="no",
        logging_steps=10,
        report_to=[],
        remove_unused_columns=False,  # required for PEFT + Whisper
        label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16,
        dataloader_num_workers=0,
    )
    timer = Timer()
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=SpeechDataset(train_items, backbone.processor),
        data_collator=collator,
        callbacks=[timer],
    )
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    model.eval()
    summary = {
        "recipe": "Seq2SeqTrainer + peft LoRA r=32 q_proj,v_proj"
        + ("" if args.targets == "encoder-decoder" else f" ({args.targets} only)"),
        "precision": "bf16" if args.bf16 else "no",
        "trainable_parameters": trainable,
        "train_utterances": len(train_items),
        "epochs": args.epochs,
        "train_seconds": round(train_s, 1),
        "epoch_end_seconds": [round(t, 1) for t in timer.epoch_ends],
        "samples_per_second": round(len(train_items) * args.epochs / train_s, 3),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if args.skip_eval:
        print("RESULT " + json.dumps(summary))
        return
    dev_items = read_manifest(args.dev)
    if args.max_dev:
        dev_items = dev_items[: args.max_dev]
    result = evaluate_items(
        Backbone(model, backbone.processor, "reference", backbone.precision),
        dev_items,
        DecodingOptions(batch_size=8),
    )
    summary["dev_wer"] = result["by_language"]["all"]["whisper"]["wer"]
    summary["dev_cer"] = result["by_language"]["all"]["whisper"]["cer"]
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
