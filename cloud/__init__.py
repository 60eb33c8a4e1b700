"""The cloud half of ggvision: event handlers on AWS managed services (S3/SQS ingest, Kinesis real-time
counts, model updates) and the second-stage inference endpoint. Imports only the product's contract."""
