"""Payments on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.payments import views

urlpatterns = [
    path("payments/account", views.account, name="payments-account"),
    path("payments/pay-balance", views.pay_balance, name="payments-pay-balance"),
    path("payments/cards/setup", views.card_setup, name="payments-card-setup"),
    path("payments/cards/save", views.card_save, name="payments-card-save"),
    path("payments/<int:payment_id>/refunds", views.refund, name="payments-refund"),
    path("payments/residents/<int:resident_id>/adjustments", views.adjustment, name="payments-adjustment"),
]
