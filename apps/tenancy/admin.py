from django.contrib import admin

from apps.tenancy.models import ChargerRegistration, Company, Condominium, Domain


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]


@admin.register(Condominium)
class CondominiumAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "company", "timezone", "currency"]
    readonly_fields = ["schema_name"]


admin.site.register(Domain)


@admin.register(ChargerRegistration)
class ChargerRegistrationAdmin(admin.ModelAdmin):
    list_display = ["charge_point_id", "condominium"]
    exclude = ["password_hash"]
