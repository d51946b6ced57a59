"""The encoder baseline: a small RoBERTa-style model pre-trained by us on Python source (MLM),
fine-tuned as a vulnerability classifier. torch and transformers are imported only by the
modules that need them."""
