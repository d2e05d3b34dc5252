"""DingTalk (钉钉) custom group robot with 加签 signing: capability 'notify'."""

from connectors.dingtalk.connector import (
    DingTalkConnector,
    DingTalkSecrets,
    DingTalkSettings,
    classify_error,
    dingtalk_sign,
    markdown_body,
    signed_query,
)

__all__ = ["DingTalkConnector", "DingTalkSecrets", "DingTalkSettings", "classify_error", "dingtalk_sign",
           "markdown_body", "signed_query"]
