"""WeCom (企业微信) group robot webhook: capability 'notify'. The webhook key is the only credential."""

from connectors.wecom.connector import (
    WeComConnector,
    WeComSecrets,
    WeComSettings,
    classify_error,
    markdown_content,
    mention_body,
    truncate_utf8,
)

__all__ = ["WeComConnector", "WeComSecrets", "WeComSettings", "classify_error", "markdown_content",
           "mention_body", "truncate_utf8"]
