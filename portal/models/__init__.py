"""Database models, one module per aggregate."""
from portal.models.users import ApiToken, User, UserSession, ROLES  # noqa: F401
from portal.models.workflow import (  # noqa: F401
    Countersign, History, Instance, Node, ProcessDefinition, Task)
from portal.models.batches import (  # noqa: F401
    Batch, BatchEvent, BatchFile, BatchItem, BatchItemAttempt)
from portal.models.uploads import PendingUpload  # noqa: F401
from portal.models.notices import (  # noqa: F401
    Notice, NoticeDelivery, NoticeDeliveryAttempt, NoticePreference, WebhookEndpoint)
